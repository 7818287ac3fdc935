#include "store/store.hpp"

#include "certs/x509.hpp"
#include "io/json_member.hpp"
#include "store/migrations.hpp"

#include <fmt/format.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

namespace mw::store {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string canonical(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::array<unsigned char, 32> sha256(std::string_view s) {
  std::array<unsigned char, 32> out{};
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), out.data());
  return out;
}

std::optional<std::string> str(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}
std::optional<int64_t> num(const Json& j, const char* key) { return io::int64_member(j, key); }
std::optional<std::string> leaf_field(const Json& attempt, const char* key) {
  auto leaf = attempt.find("leaf");
  if (leaf == attempt.end() || !leaf->is_object()) return std::nullopt;
  return str(*leaf, key);
}

// scan and sweep records: a control, then tests; the forged leaf is the first
// test answer that holds an interceptor or differs from the control's leaf.
void index_attempts(const Json& record, RecordIndex& ix) {
  auto attempts = record.find("attempts");
  if (attempts == record.end() || !attempts->is_array() || attempts->empty()) return;
  ix.observed_ms = num(attempts->front(), "started_ms");
  for (const auto& a : *attempts)
    if (a.is_object() && str(a, "role") == "control") {
      ix.control_leaf_sha256 = leaf_field(a, "sha256");
      break;
    }
  if (ix.verdict != "intercepted") return;
  for (const auto& a : *attempts) {
    if (!a.is_object() || str(a, "role") != "test") continue;
    auto sha = leaf_field(a, "sha256");
    bool holds = a.contains("interceptor") && a["interceptor"].is_object();
    if (sha && (holds || sha != ix.control_leaf_sha256)) {
      ix.leaf_sha256 = sha;
      ix.issuer = leaf_field(a, "issuer");
      return;
    }
  }
}

}  // namespace

tl::expected<RecordIndex, Error> index_record(const Json& r) {
  if (!r.is_object()) return tl::unexpected(Error("not a JSON object"));
  auto schema = str(r, "schema");
  if (!schema) return tl::unexpected(Error("no \"schema\" field"));
  constexpr std::string_view prefix = "mitmwatch.";
  auto slash = schema->find('/');
  if (schema->rfind(prefix, 0) != 0 || slash == std::string::npos)
    return tl::unexpected("schema \"" + *schema + "\" is not a mitmwatch record");
  RecordIndex ix;
  ix.kind = schema->substr(prefix.size(), slash - prefix.size());
  ix.verdict = str(r, "verdict");
  if (ix.kind == "scan" || ix.kind == "sweep") {
    ix.target = str(r, "target");
    ix.sni = str(r, "sni");
    index_attempts(r, ix);
  } else if (ix.kind == "trace") {
    ix.target = str(r, "target");
    ix.sni = str(r, "trigger_sni");
    ix.observed_ms = num(r, "started_unix_ms");
    ix.injector_hop = num(r, "injector_hop");
    ix.hop_before = str(r, "injector_before");
    ix.hop_after = str(r, "injector_after");
    if (auto t = r.find("trigger"); t != r.end() && t->is_object() && t->value("forged", false)) {
      ix.issuer = leaf_field(*t, "issuer");
      ix.leaf_sha256 = leaf_field(*t, "sha256");
    }
  } else if (ix.kind == "fpserver") {
    ix.target = str(r, "client");
    ix.sni = str(r, "sni");
    ix.observed_ms = num(r, "time_unix_ms");
  } else if (ix.kind == "pcap") {
    ix.target = str(r, "server");
    ix.sni = str(r, "sni");
    ix.observed_ms = num(r, "first_seen_unix_ms");
  }
  return ix;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::string default_data_dir() {
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/mitmwatch";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/mitmwatch";
}

std::string default_db_path() {
  if (const char* p = std::getenv("MITMWATCH_DB"); p && *p) return p;
  return default_data_dir() + "/mitmwatch.db";
}

std::string files_dir_of(const std::string& where) {
  if (Database::is_postgresql_url(where) || where == ":memory:") return default_data_dir();
  auto dir = std::filesystem::path(where).parent_path().string();
  return dir.empty() ? "." : dir;
}

std::string run_uid_of_first_record(const Json& record) {
  auto h = sha256(canonical(record));
  return "sha256:" + certs::hex(h.data(), h.size());
}

namespace {

// Where add_record stages rows before a flush moves them, set by set, into
// the store: one COPY (PostgreSQL) or one prepared insert a row (SQLite) into
// session-private tables, then a few statements that update the summaries
// and move the rows over. The summaries are thus kept by the same SQL on both
// backends, in the records' own transaction.
const std::vector<std::string> kStagedRecordColumns{
    "seq",        "run_id",       "vantage",     "content_sha256", "kind",         "observed_ms",
    "observed",   "target",       "sni",         "verdict",        "issuer",       "leaf_sha256",
    "control_leaf_sha256", "injector_hop", "hop_before", "hop_after", "body"};
const std::vector<std::string> kStagedCertColumns{"sha256", "der", "subject", "issuer", "first_seen_ms"};

std::string staging_tables(Dialect d) {
  const char* i = d == Dialect::sqlite ? "INTEGER" : "BIGINT";
  const char* b = d == Dialect::sqlite ? "BLOB" : "BYTEA";
  return fmt::format(
      "CREATE TEMP TABLE IF NOT EXISTS records_in(seq {0}, run_id {0}, vantage TEXT, content_sha256 {1}, kind TEXT, "
      "observed_ms {0}, observed {0}, target TEXT, sni TEXT, verdict TEXT, issuer TEXT, leaf_sha256 TEXT, "
      "control_leaf_sha256 TEXT, injector_hop {0}, hop_before TEXT, hop_after TEXT, body TEXT);"
      "CREATE TEMP TABLE IF NOT EXISTS certs_in(sha256 TEXT, der {1}, subject TEXT, issuer TEXT, first_seen_ms {0})",
      i, b);
}

#define MW_COUNT_IF(v) "sum(CASE WHEN verdict = '" v "' THEN 1 ELSE 0 END)"
#define MW_JUDGED "kind IN ('scan', 'sweep') AND verdict IS NOT NULL"
// In order. "WHERE true" before ON CONFLICT keeps SQLite's parser from taking
// ON for a join; ORDER BY makes concurrent PostgreSQL writers lock summary rows
// in one order, so they wait for each other instead of deadlocking.
const char* const kMergeSteps[] = {
    "DELETE FROM records_in WHERE EXISTS (SELECT 1 FROM records r WHERE r.run_id = records_in.run_id AND "
    "r.content_sha256 = records_in.content_sha256)",
    "SELECT count(*) FROM records_in",
    "INSERT INTO certificates(sha256, der, subject, issuer, first_seen_ms) SELECT sha256, der, subject, issuer, "
    "first_seen_ms FROM certs_in WHERE true ORDER BY sha256 ON CONFLICT(sha256) DO NOTHING",
    "INSERT INTO run_stats(run_id, records, intercepted, blocked, clean, unreachable) SELECT run_id, count(*), "
    MW_COUNT_IF("intercepted") ", " MW_COUNT_IF("blocked") ", " MW_COUNT_IF("clean") ", " MW_COUNT_IF("unreachable")
    " FROM records_in WHERE true GROUP BY run_id ORDER BY run_id ON CONFLICT(run_id) DO UPDATE SET "
    "records = run_stats.records + excluded.records, intercepted = run_stats.intercepted + excluded.intercepted, "
    "blocked = run_stats.blocked + excluded.blocked, clean = run_stats.clean + excluded.clean, "
    "unreachable = run_stats.unreachable + excluded.unreachable",
    "UPDATE runs SET "
    "started_ms = CASE WHEN runs.started_ms IS NULL OR span.first_ms < runs.started_ms THEN span.first_ms "
    "ELSE runs.started_ms END, "
    "ended_ms = CASE WHEN runs.ended_ms IS NULL OR span.last_ms > runs.ended_ms THEN span.last_ms ELSE runs.ended_ms END "
    "FROM (SELECT run_id, min(observed) AS first_ms, max(observed) AS last_ms FROM records_in GROUP BY run_id) AS span "
    "WHERE runs.id = span.run_id",
    // A target's last verdict is that of its latest record (the later one of a tie).
    "INSERT INTO target_stats(vantage, kind, target, records, intercepted, last_verdict, last_ms) "
    "SELECT vantage, kind, target, n, hits, verdict, observed FROM (SELECT vantage, kind, target, verdict, observed, "
    "count(*) OVER w AS n, " MW_COUNT_IF("intercepted") " OVER w AS hits, "
    "row_number() OVER (PARTITION BY vantage, kind, target ORDER BY observed DESC, seq DESC) AS pick "
    "FROM records_in WHERE " MW_JUDGED " AND target IS NOT NULL WINDOW w AS (PARTITION BY vantage, kind, target)) AS t "
    "WHERE pick = 1 ORDER BY vantage, kind, target ON CONFLICT(vantage, kind, target) DO UPDATE SET "
    "records = target_stats.records + excluded.records, "
    "intercepted = target_stats.intercepted + excluded.intercepted, "
    "last_verdict = CASE WHEN excluded.last_ms >= coalesce(target_stats.last_ms, 0) THEN excluded.last_verdict "
    "ELSE target_stats.last_verdict END, "
    "last_ms = CASE WHEN excluded.last_ms > coalesce(target_stats.last_ms, 0) THEN excluded.last_ms "
    "ELSE target_stats.last_ms END",
    "INSERT INTO sni_stats(vantage, kind, sni, records, intercepted, last_ms) SELECT vantage, kind, sni, count(*), "
    MW_COUNT_IF("intercepted") ", max(observed) FROM records_in WHERE " MW_JUDGED " AND sni IS NOT NULL "
    "GROUP BY vantage, kind, sni ORDER BY vantage, kind, sni ON CONFLICT(vantage, kind, sni) DO UPDATE SET "
    "records = sni_stats.records + excluded.records, intercepted = sni_stats.intercepted + excluded.intercepted, "
    "last_ms = CASE WHEN excluded.last_ms > coalesce(sni_stats.last_ms, 0) THEN excluded.last_ms "
    "ELSE sni_stats.last_ms END",
    "INSERT INTO issuer_stats(issuer, records, first_ms, last_ms) SELECT issuer, count(*), min(observed), max(observed) "
    "FROM records_in WHERE issuer IS NOT NULL AND ((" MW_JUDGED ") OR kind = 'trace') GROUP BY issuer ORDER BY issuer "
    "ON CONFLICT(issuer) DO UPDATE SET records = issuer_stats.records + excluded.records, "
    "first_ms = CASE WHEN excluded.first_ms < issuer_stats.first_ms THEN excluded.first_ms ELSE issuer_stats.first_ms END, "
    "last_ms = CASE WHEN excluded.last_ms > issuer_stats.last_ms THEN excluded.last_ms ELSE issuer_stats.last_ms END",
    "INSERT INTO records(run_id, content_sha256, kind, observed_ms, target, sni, verdict, issuer, leaf_sha256, "
    "control_leaf_sha256, injector_hop, hop_before, hop_after, body) SELECT run_id, content_sha256, kind, observed_ms, "
    "target, sni, verdict, issuer, leaf_sha256, control_leaf_sha256, injector_hop, hop_before, hop_after, body "
    "FROM records_in WHERE true ORDER BY seq ON CONFLICT(run_id, content_sha256) DO NOTHING",
    "DELETE FROM records_in",
    "DELETE FROM certs_in",
};
#undef MW_COUNT_IF
#undef MW_JUDGED
constexpr size_t kCountStep = 1;  // the step whose row is the number of new records

Value opt(const std::optional<std::string>& v) { return v ? Value(*v) : Value(); }
Value opt(const std::optional<int64_t>& v) { return v ? Value(*v) : Value(); }

}  // namespace

struct Store::Staged {
  std::vector<Value> records, certs;
  std::unordered_set<std::string> keys;  // run and content hash: a batch holds a record once
  uint64_t repeated = 0;
  int64_t seq = 0;
};

Store::Store(Database db) : db_(std::move(db)), staged_(std::make_unique<Staged>()) {}
Store::Store(Store&&) noexcept = default;
Store::~Store() = default;

tl::expected<Store, Error> Store::open(const std::string& where) {
  bool pg = Database::is_postgresql_url(where);
  if (!pg && where != ":memory:") {
    auto dir = std::filesystem::path(where).parent_path();
    std::error_code ec;
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    if (ec) return tl::unexpected(where + ": cannot create its directory: " + ec.message());
  }
  auto db = Database::open(where);
  if (!db) return tl::unexpected(db.error());
  if (!pg) {
    // WAL: readers (the dashboard) never block the writer (a monitor). NORMAL
    // syncs at checkpoints: a killed process loses no committed transaction;
    // only a power cut can lose the last ones. Staged rows stay in memory.
    for (const char* pragma :
         {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON", "PRAGMA temp_store=MEMORY"})
      if (auto ok = db->exec(pragma); !ok) return tl::unexpected(ok.error());
  }
  if (auto v = migrate(*db); !v) return tl::unexpected(v.error());
  Store s(std::move(*db));
  if (auto ok = s.prepare_writes(); !ok) return tl::unexpected(ok.error());
  return s;
}

tl::expected<Store, Error> Store::open_read_only(const std::string& where) {
  if (!Database::is_postgresql_url(where) && !std::filesystem::exists(where))
    return tl::unexpected(where + ": no such store (write one with --db or import)");
  auto db = Database::open(where, true);
  if (!db) return tl::unexpected(db.error());
  auto version = schema_version(*db);
  if (!version) return tl::unexpected(where + ": not a mitmwatch store (" + version.error() + ")");
  if (*version == 0) return tl::unexpected(where + ": not a mitmwatch store (no schema)");
  if (*version > latest_schema_version())
    return tl::unexpected(fmt::format("{}: store schema version {} (this mitmwatch reads up to {})", db->path(),
                                      *version, latest_schema_version()));
  return Store(std::move(*db));
}

tl::expected<void, Error> Store::prepare_writes() {
  // Session-private: created outside any transaction so that a rollback keeps them.
  if (auto ok = db_.exec(staging_tables(db_.dialect())); !ok) return ok;
  for (const char* sql : kMergeSteps) {
    auto s = db_.prepare(sql);
    if (!s) return tl::unexpected(s.error());
    merge_.push_back(std::move(*s));
  }
  return {};
}

tl::expected<WriteTransaction, Error> Store::transaction() {
  if (in_transaction_) return tl::unexpected(Error("a write transaction is already open"));
  auto tx = Transaction::begin(db_);
  if (!tx) return tl::unexpected(tx.error());
  in_transaction_ = true;
  return WriteTransaction(this, std::move(*tx));
}

tl::expected<int64_t, Error> Store::begin_run(const std::string& uid, const RunInfo& info) {
  // Resumed: running again until finish_run says otherwise.
  auto again = db_.prepare("UPDATE runs SET status = 'running' WHERE uid = ?1 RETURNING id");
  if (!again) return tl::unexpected(again.error());
  again->bind(1, uid);
  auto row = again->step();
  if (!row) return tl::unexpected(row.error());
  if (*row) return again->int64(0);
  auto ins = db_.prepare(
      "INSERT INTO runs(uid, command, vantage, series, source, args, tool_version) VALUES(?1,?2,?3,?4,?5,?6,?7) "
      "RETURNING id");
  if (!ins) return tl::unexpected(ins.error());
  ins->bind(1, uid).bind(2, info.command).bind(3, info.vantage).bind(4, info.series).bind(5, info.source);
  ins->bind(6, info.args).bind(7, info.tool_version);
  row = ins->step();
  if (!row) return tl::unexpected(row.error());
  return ins->int64(0);
}

// Certificates leave the record for the certificates table: a scan of a
// million targets behind one device repeats the same few forged chains.
tl::expected<Json, Error> Store::move_chains_out(const Json& record, int64_t observed_ms) {
  Json body = record;
  std::function<tl::expected<void, Error>(Json&)> walk = [&](Json& node) -> tl::expected<void, Error> {
    if (node.is_array()) {
      for (auto& e : node)
        if (auto ok = walk(e); !ok) return ok;
      return {};
    }
    if (!node.is_object()) return {};
    for (auto it = node.begin(); it != node.end(); ++it) {
      auto& value = it.value();
      bool chain = it.key() == "chain" && value.is_array() && !value.empty() &&
                   std::all_of(value.begin(), value.end(), [](const Json& c) { return c.is_string(); });
      if (!chain) {
        if (auto ok = walk(value); !ok) return ok;
        continue;
      }
      Json refs = Json::array();
      for (const auto& c : value) {
        const auto& text = c.get_ref<const std::string&>();
        if (auto hit = sha_of_base64_.find(text); hit != sha_of_base64_.end()) {
          refs.push_back(hit->second);
          continue;
        }
        auto der = certs::unbase64(text);
        if (!der) return tl::unexpected("a chain certificate is not base64: " + der.error());
        std::string sha = certs::sha256_hex(*der);
        if (sha_of_base64_.size() > 20000) sha_of_base64_.clear();  // bounded: a scan of a million distinct chains
        sha_of_base64_.emplace(text, sha);
        if (known_certs_.insert(sha).second) {
          std::optional<std::string> subject, issuer;
          if (auto x = certs::from_der(*der)) {
            subject = certs::subject_text(x->get());
            issuer = certs::issuer_text(x->get());
          }
          auto& cells = staged_->certs;
          cells.emplace_back(sha);
          cells.emplace_back(Blob{std::move(*der)});
          cells.push_back(opt(subject));
          cells.push_back(opt(issuer));
          cells.emplace_back(observed_ms);
          uncommitted_certs_.push_back(sha);
        }
        refs.push_back(std::move(sha));
      }
      value = Json{{"$sha256", std::move(refs)}};
    }
    return {};
  };
  if (auto ok = walk(body); !ok) return tl::unexpected(ok.error());
  return body;
}

tl::expected<void, Error> Store::add_record(int64_t run, const std::string& vantage, const Json& record) {
  if (!in_transaction_) return tl::unexpected(Error("add_record outside a write transaction"));
  auto ix = index_record(record);
  if (!ix) return tl::unexpected(ix.error());
  int64_t observed = ix->observed_ms.value_or(now_ms());
  auto body = move_chains_out(record, observed);
  if (!body) return tl::unexpected(body.error());
  // The identity is the hash of what is stored: the record with its chains
  // as certificate hashes, a function of the record alone, and one dump less.
  std::string text = canonical(*body);
  auto content = sha256(text);
  std::string key = std::to_string(run) + ":" + std::string(reinterpret_cast<const char*>(content.data()), content.size());
  if (!staged_->keys.insert(std::move(key)).second) {
    ++staged_->repeated;
    return {};
  }
  auto& c = staged_->records;
  c.emplace_back(staged_->seq++);
  c.emplace_back(run);
  c.emplace_back(vantage);
  c.emplace_back(Blob{std::vector<unsigned char>(content.begin(), content.end())});
  c.emplace_back(ix->kind);
  c.push_back(opt(ix->observed_ms));
  c.emplace_back(observed);
  for (const auto* v : {&ix->target, &ix->sni, &ix->verdict, &ix->issuer, &ix->leaf_sha256, &ix->control_leaf_sha256})
    c.push_back(opt(*v));
  c.push_back(opt(ix->injector_hop));
  c.push_back(opt(ix->hop_before));
  c.push_back(opt(ix->hop_after));
  c.emplace_back(std::move(text));
  return {};
}

tl::expected<WriteStats, Error> Store::write_staged() {
  WriteStats stats;
  uint64_t staged = staged_->records.size() / kStagedRecordColumns.size();
  stats.already = staged_->repeated;
  if (staged == 0 && staged_->certs.empty()) {
    *staged_ = Staged{};
    return stats;
  }
  if (auto ok = db_.bulk_insert("certs_in", kStagedCertColumns, staged_->certs); !ok) return tl::unexpected(ok.error());
  if (auto ok = db_.bulk_insert("records_in", kStagedRecordColumns, staged_->records); !ok)
    return tl::unexpected(ok.error());
  for (size_t i = 0; i < merge_.size(); ++i) {
    auto& s = merge_[i];
    if (i == kCountStep) {
      auto row = s.step();
      if (!row) return tl::unexpected(row.error());
      stats.added = static_cast<uint64_t>(s.int64(0));
      s.reset();
      stats.already += staged - stats.added;
    } else if (auto ok = s.run(); !ok) {
      return tl::unexpected(ok.error());
    }
  }
  *staged_ = Staged{};
  return stats;
}

void Store::end_transaction(bool committed) {
  // Certificates written by a transaction that rolled back are not in the
  // store: forget them, and the shortcut that skips to a known one.
  if (!committed) {
    for (const auto& sha : uncommitted_certs_) known_certs_.erase(sha);
    sha_of_base64_.clear();
  }
  uncommitted_certs_.clear();
  *staged_ = Staged{};
  in_transaction_ = false;
}

WriteTransaction::WriteTransaction(WriteTransaction&& o) noexcept : store_(o.store_), tx_(std::move(o.tx_)) {
  o.store_ = nullptr;
  o.tx_.reset();
}

WriteTransaction::~WriteTransaction() {
  if (!store_ || !tx_) return;
  tx_.reset();  // ROLLBACK
  store_->end_transaction(false);
}

tl::expected<WriteStats, Error> WriteTransaction::flush() {
  if (!store_ || !tx_) return tl::unexpected(Error("the write transaction is over"));
  return store_->write_staged();
}

tl::expected<WriteStats, Error> WriteTransaction::commit() {
  auto stats = flush();
  if (!stats) return stats;
  if (auto ok = tx_->commit(); !ok) return tl::unexpected(ok.error());
  tx_.reset();
  store_->end_transaction(true);
  return stats;
}

tl::expected<void, Error> Store::finish_run(int64_t run, const std::string& status) {
  auto s = db_.prepare(
      "UPDATE runs SET status = ?2, ended_ms = CASE WHEN ?2 = 'imported' THEN ended_ms "
      "WHEN ended_ms IS NULL OR ended_ms < ?3 THEN ?3 ELSE ended_ms END, started_ms = coalesce(started_ms, ?3) "
      "WHERE id = ?1");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, run).bind(2, status).bind(3, now_ms());
  return s->run();
}

tl::expected<int64_t, Error> Store::add_event(const Event& e) {
  auto s = db_.prepare(
      "INSERT INTO events(run_id, series, vantage, at_ms, type, subject, details) VALUES(?1,?2,?3,?4,?5,?6,?7) "
      "RETURNING id");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, e.run_id).bind(2, e.series).bind(3, e.vantage).bind(4, e.at_ms);
  s->bind(5, e.type).bind(6, e.subject).bind(7, canonical(e.details));
  auto row = s->step();
  if (!row) return tl::unexpected(row.error());
  return s->int64(0);
}

namespace {
constexpr const char* kRunColumns =
    "SELECT r.id, r.uid, r.command, r.vantage, r.series, r.source, r.status, r.tool_version, r.started_ms, "
    "r.ended_ms, coalesce(s.records,0), coalesce(s.intercepted,0), coalesce(s.blocked,0), coalesce(s.clean,0), "
    "coalesce(s.unreachable,0) FROM runs r LEFT JOIN run_stats s ON s.run_id = r.id ";

RunRow run_row(const Statement& s) {
  RunRow r;
  r.id = s.int64(0);
  r.uid = s.text(1);
  r.command = s.text(2);
  r.vantage = s.text(3);
  r.series = s.text(4);
  r.source = s.text(5);
  r.status = s.text(6);
  r.tool_version = s.text(7);
  if (!s.is_null(8)) r.started_ms = s.int64(8);
  if (!s.is_null(9)) r.ended_ms = s.int64(9);
  r.records = s.int64(10);
  r.intercepted = s.int64(11);
  r.blocked = s.int64(12);
  r.clean = s.int64(13);
  r.unreachable = s.int64(14);
  return r;
}
}  // namespace

tl::expected<std::vector<RunRow>, Error> Store::runs(const std::string& command, const std::string& series) {
  auto s = db_.prepare(std::string(kRunColumns) +
                       "WHERE (?1 = '' OR r.command = ?1) AND (?2 = '' OR r.series = ?2) ORDER BY r.started_ms, r.id");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, std::string_view(command)).bind(2, std::string_view(series));
  std::vector<RunRow> out;
  for (;;) {
    auto row = s->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.push_back(run_row(*s));
  }
  return out;
}

tl::expected<std::optional<RunRow>, Error> Store::run(int64_t id) {
  auto s = db_.prepare(std::string(kRunColumns) + "WHERE r.id = ?1");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, id);
  auto row = s->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<RunRow>();
  return std::optional<RunRow>(run_row(*s));
}

tl::expected<void, Error> Store::restore_chains(Json& body) {
  std::function<tl::expected<void, Error>(Json&)> walk = [&](Json& node) -> tl::expected<void, Error> {
    if (node.is_array()) {
      for (auto& e : node)
        if (auto ok = walk(e); !ok) return ok;
    } else if (node.is_object()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        auto& v = it.value();
        if (it.key() == "chain" && v.is_object() && v.contains("$sha256")) {
          Json chain = Json::array();
          for (const auto& sha : v["$sha256"]) {
            auto der = certificate_der(sha.get<std::string>());
            if (!der) return tl::unexpected(der.error());
            if (!*der) return tl::unexpected("certificate " + sha.get<std::string>() + " missing from the store");
            chain.push_back(certs::base64(**der));
          }
          v = std::move(chain);
        } else if (auto ok = walk(v); !ok) {
          return ok;
        }
      }
    }
    return {};
  };
  return walk(body);
}

tl::expected<void, Error> Store::for_each_record(int64_t run, const std::function<void(const Json&)>& visit) {
  // A page at a time: a run may hold millions of records (PostgreSQL sends a
  // result whole), and restoring chains queries the store between rows.
  auto s = db_.prepare("SELECT id, body FROM records WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT 2000");
  if (!s) return tl::unexpected(s.error());
  int64_t after = 0;
  for (;;) {
    std::vector<std::pair<int64_t, std::string>> page;
    s->bind(1, run).bind(2, after);
    for (;;) {
      auto row = s->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      page.emplace_back(s->int64(0), s->text(1));
    }
    s->reset();
    if (page.empty()) return {};
    for (auto& [id, text] : page) {
      auto body = Json::parse(text, nullptr, false);
      if (body.is_discarded())
        return tl::unexpected(fmt::format("{}: run {}: a stored record is not JSON", db_.path(), run));
      if (auto ok = restore_chains(body); !ok) return tl::unexpected(ok.error());
      visit(body);
      after = id;
    }
  }
}

tl::expected<std::optional<Json>, Error> Store::record(int64_t id) {
  auto s = db_.prepare("SELECT body FROM records WHERE id = ?1");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, id);
  auto row = s->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<Json>();
  auto body = Json::parse(s->text(0), nullptr, false);
  if (body.is_discarded()) return tl::unexpected(fmt::format("record {} is not JSON", id));
  if (auto ok = restore_chains(body); !ok) return tl::unexpected(ok.error());
  return std::optional<Json>(std::move(body));
}

tl::expected<std::vector<Event>, Error> Store::events(const std::string& series, int64_t since_ms) {
  auto s = db_.prepare(
      "SELECT id, run_id, series, vantage, at_ms, type, subject, details FROM events "
      "WHERE (?1 = '' OR series = ?1) AND at_ms >= ?2 ORDER BY at_ms, id");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, std::string_view(series)).bind(2, since_ms);
  std::vector<Event> out;
  for (;;) {
    auto row = s->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    Event e;
    e.id = s->int64(0);
    if (!s->is_null(1)) e.run_id = s->int64(1);
    e.series = s->text(2);
    e.vantage = s->text(3);
    e.at_ms = s->int64(4);
    e.type = s->text(5);
    e.subject = s->text(6);
    e.details = Json::parse(s->text(7), nullptr, false);
    out.push_back(std::move(e));
  }
  return out;
}

tl::expected<std::optional<std::vector<unsigned char>>, Error> Store::certificate_der(const std::string& sha256) {
  auto s = db_.prepare("SELECT der FROM certificates WHERE sha256 = ?1");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, std::string_view(sha256));
  auto row = s->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<std::vector<unsigned char>>();
  return std::optional<std::vector<unsigned char>>(s->blob(0));
}

tl::expected<int64_t, Error> Store::count(const std::string& table) {
  auto s = db_.prepare("SELECT count(*) FROM " + table);
  if (!s) return tl::unexpected(s.error());
  auto row = s->step();
  if (!row) return tl::unexpected(row.error());
  return s->int64(0);
}

RunWriter::RunWriter(Store& store, RunInfo info, std::string uid, size_t batch, int64_t interval_ms)
    : store_(store), info_(std::move(info)), uid_(std::move(uid)), batch_(batch), interval_ms_(interval_ms) {}

RunWriter::~RunWriter() { (void)flush(); }

tl::expected<void, Error> RunWriter::add(const Json& record) {
  if (!run_) {
    if (uid_.empty()) uid_ = run_uid_of_first_record(record);
    auto id = store_.begin_run(uid_, info_);
    if (!id) return tl::unexpected(id.error());
    run_ = *id;
  }
  if (!open_) {
    auto t = store_.transaction();
    if (!t) return tl::unexpected(t.error());
    open_.emplace(std::move(*t));
    opened_ms_ = now_ms();
  }
  if (auto ok = store_.add_record(*run_, info_.vantage, record); !ok) return ok;
  if (++pending_ >= batch_ || now_ms() - opened_ms_ >= interval_ms_) return flush();
  return {};
}

tl::expected<void, Error> RunWriter::flush() {
  if (!open_) return {};
  auto stats = open_->commit();
  open_.reset();
  pending_ = 0;
  if (!stats) return tl::unexpected(stats.error());
  added_ += stats->added;
  return {};
}

tl::expected<void, Error> RunWriter::finish(const std::string& status) {
  if (auto ok = flush(); !ok) return ok;
  if (!run_) return {};
  return store_.finish_run(*run_, status);
}

}  // namespace mw::store
