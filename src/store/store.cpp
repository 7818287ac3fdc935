#include "store/store.hpp"

#include "certs/x509.hpp"

#include <fmt/format.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

namespace mw::store {
namespace {

constexpr int kSchemaVersion = 1;

// Summary tables (run_stats, target_stats, sni_stats, issuer_stats) are kept
// by the writer in the record's own transaction: always consistent with the
// records, and a dashboard query touches a few hundred rows, not millions.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
  id INTEGER PRIMARY KEY,
  uid TEXT NOT NULL UNIQUE,
  command TEXT NOT NULL,
  vantage TEXT NOT NULL,
  series TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT '',
  args TEXT NOT NULL DEFAULT '',
  tool_version TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'running',
  started_ms INTEGER,
  ended_ms INTEGER);
CREATE INDEX IF NOT EXISTS runs_series ON runs(series, started_ms);
CREATE TABLE IF NOT EXISTS records(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id),
  content_sha256 BLOB NOT NULL,
  kind TEXT NOT NULL,
  observed_ms INTEGER,
  target TEXT, sni TEXT, verdict TEXT,
  issuer TEXT, leaf_sha256 TEXT, control_leaf_sha256 TEXT,
  injector_hop INTEGER, hop_before TEXT, hop_after TEXT,
  body TEXT NOT NULL,
  UNIQUE(run_id, content_sha256));
CREATE INDEX IF NOT EXISTS records_target ON records(target, sni);
CREATE INDEX IF NOT EXISTS records_sni ON records(sni, verdict);
CREATE INDEX IF NOT EXISTS records_hops ON records(hop_before, hop_after) WHERE kind = 'trace';
CREATE INDEX IF NOT EXISTS records_forged ON records(leaf_sha256, kind) WHERE leaf_sha256 IS NOT NULL;
CREATE TABLE IF NOT EXISTS certificates(
  sha256 TEXT PRIMARY KEY,
  der BLOB NOT NULL,
  subject TEXT, issuer TEXT,
  first_seen_ms INTEGER);
CREATE TABLE IF NOT EXISTS run_stats(
  run_id INTEGER PRIMARY KEY REFERENCES runs(id),
  records INTEGER NOT NULL DEFAULT 0,
  intercepted INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0,
  clean INTEGER NOT NULL DEFAULT 0, unreachable INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS target_stats(
  vantage TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
  records INTEGER NOT NULL, intercepted INTEGER NOT NULL,
  last_verdict TEXT, last_ms INTEGER,
  PRIMARY KEY(vantage, kind, target));
CREATE TABLE IF NOT EXISTS sni_stats(
  vantage TEXT NOT NULL, kind TEXT NOT NULL, sni TEXT NOT NULL,
  records INTEGER NOT NULL, intercepted INTEGER NOT NULL, last_ms INTEGER,
  PRIMARY KEY(vantage, kind, sni));
CREATE TABLE IF NOT EXISTS issuer_stats(
  issuer TEXT PRIMARY KEY, records INTEGER NOT NULL, first_ms INTEGER, last_ms INTEGER);
CREATE TABLE IF NOT EXISTS events(
  id INTEGER PRIMARY KEY,
  run_id INTEGER REFERENCES runs(id),
  series TEXT NOT NULL, vantage TEXT NOT NULL,
  at_ms INTEGER NOT NULL, type TEXT NOT NULL, subject TEXT NOT NULL,
  details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_series ON events(series, at_ms);
)sql";

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
std::optional<int64_t> num(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<int64_t>();
}
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

std::string default_db_path() {
  if (const char* p = std::getenv("MITMWATCH_DB"); p && *p) return p;
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/mitmwatch/mitmwatch.db";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/mitmwatch/mitmwatch.db";
}

std::string run_uid_of_first_record(const Json& record) {
  auto h = sha256(canonical(record));
  return "sha256:" + certs::hex(h.data(), h.size());
}

tl::expected<Store, Error> Store::open(const std::string& path) {
  if (path != ":memory:") {
    auto dir = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    if (ec) return tl::unexpected(path + ": cannot create its directory: " + ec.message());
  }
  auto db = Database::open(path);
  if (!db) return tl::unexpected(db.error());
  // WAL: readers (the dashboard) never block the writer (a monitor). NORMAL
  // syncs at checkpoints: a killed process loses no committed transaction;
  // only a power cut can lose the last ones.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"})
    if (auto ok = db->exec(pragma); !ok) return tl::unexpected(ok.error());
  if (auto ok = db->exec(kSchema); !ok) return tl::unexpected(ok.error());
  auto version = db->prepare("SELECT value FROM meta WHERE key = 'schema_version'");
  if (!version) return tl::unexpected(version.error());
  auto row = version->step();
  if (!row) return tl::unexpected(path + ": " + row.error());
  if (*row) {
    if (version->text(0) != std::to_string(kSchemaVersion))
      return tl::unexpected(fmt::format("{}: store schema version {} (this mitmwatch reads {})", path,
                                        version->text(0), kSchemaVersion));
  } else if (auto ok = db->exec(fmt::format("INSERT INTO meta VALUES('schema_version', '{}')", kSchemaVersion));
             !ok) {
    return tl::unexpected(ok.error());
  }
  Store s(std::move(*db));
  if (auto ok = s.prepare_writes(); !ok) return tl::unexpected(ok.error());
  return s;
}

tl::expected<Store, Error> Store::open_read_only(const std::string& path) {
  if (!std::filesystem::exists(path)) return tl::unexpected(path + ": no such store (write one with --db or import)");
  auto db = Database::open(path, true);
  if (!db) return tl::unexpected(db.error());
  auto probe = db->prepare("SELECT value FROM meta WHERE key = 'schema_version'");
  if (!probe) return tl::unexpected(path + ": not a mitmwatch store (" + probe.error() + ")");
  return Store(std::move(*db));
}

tl::expected<void, Error> Store::prepare_writes() {
  auto prep = [&](std::optional<Statement>& slot, const char* sql) -> tl::expected<void, Error> {
    auto s = db_.prepare(sql);
    if (!s) return tl::unexpected(s.error());
    slot.emplace(std::move(*s));
    return {};
  };
  tl::expected<void, Error> ok;
  if (!(ok = prep(insert_record_,
                  "INSERT OR IGNORE INTO records(run_id, content_sha256, kind, observed_ms, target, sni, verdict, "
                  "issuer, leaf_sha256, control_leaf_sha256, injector_hop, hop_before, hop_after, body) "
                  "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)")))
    return ok;
  if (!(ok = prep(insert_cert_,
                  "INSERT OR IGNORE INTO certificates(sha256, der, subject, issuer, first_seen_ms) VALUES(?1,?2,?3,?4,?5)")))
    return ok;
  if (!(ok = prep(upsert_run_stats_,
                  "INSERT INTO run_stats(run_id, records, intercepted, blocked, clean, unreachable) "
                  "VALUES(?1, 1, ?2, ?3, ?4, ?5) ON CONFLICT(run_id) DO UPDATE SET records = records + 1, "
                  "intercepted = intercepted + ?2, blocked = blocked + ?3, clean = clean + ?4, "
                  "unreachable = unreachable + ?5")))
    return ok;
  if (!(ok = prep(upsert_target_,
                  "INSERT INTO target_stats VALUES(?1, ?2, ?3, 1, ?4, ?5, ?6) "
                  "ON CONFLICT(vantage, kind, target) DO UPDATE SET records = records + 1, "
                  "intercepted = intercepted + ?4, "
                  "last_verdict = CASE WHEN ?6 >= coalesce(last_ms, 0) THEN ?5 ELSE last_verdict END, "
                  "last_ms = max(coalesce(last_ms, 0), ?6)")))
    return ok;
  if (!(ok = prep(upsert_sni_,
                  "INSERT INTO sni_stats VALUES(?1, ?2, ?3, 1, ?4, ?5) "
                  "ON CONFLICT(vantage, kind, sni) DO UPDATE SET records = records + 1, "
                  "intercepted = intercepted + ?4, last_ms = max(coalesce(last_ms, 0), ?5)")))
    return ok;
  if (!(ok = prep(upsert_issuer_,
                  "INSERT INTO issuer_stats VALUES(?1, 1, ?2, ?2) ON CONFLICT(issuer) DO UPDATE SET "
                  "records = records + 1, first_ms = min(first_ms, ?2), last_ms = max(last_ms, ?2)")))
    return ok;
  return prep(touch_run_,
              "UPDATE runs SET started_ms = min(coalesce(started_ms, ?2), ?2), "
              "ended_ms = max(coalesce(ended_ms, ?2), ?2) WHERE id = ?1");
}

tl::expected<int64_t, Error> Store::begin_run(const std::string& uid, const RunInfo& info) {
  auto find = db_.prepare("SELECT id FROM runs WHERE uid = ?1");
  if (!find) return tl::unexpected(find.error());
  find->bind(1, std::string_view(uid));
  auto row = find->step();
  if (!row) return tl::unexpected(row.error());
  if (*row) {
    int64_t id = find->int64(0);
    // Resumed: running again until finish_run says otherwise.
    auto again = db_.prepare("UPDATE runs SET status = 'running' WHERE id = ?1");
    if (!again) return tl::unexpected(again.error());
    again->bind(1, id);
    if (auto ok = again->run(); !ok) return tl::unexpected(ok.error());
    return id;
  }
  auto ins = db_.prepare(
      "INSERT INTO runs(uid, command, vantage, series, source, args, tool_version) VALUES(?1,?2,?3,?4,?5,?6,?7)");
  if (!ins) return tl::unexpected(ins.error());
  ins->bind(1, std::string_view(uid)).bind(2, std::string_view(info.command)).bind(3, std::string_view(info.vantage));
  ins->bind(4, std::string_view(info.series)).bind(5, std::string_view(info.source));
  ins->bind(6, std::string_view(info.args)).bind(7, std::string_view(info.tool_version));
  if (auto ok = ins->run(); !ok) return tl::unexpected(ok.error());
  return db_.last_insert_id();
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
          insert_cert_->bind(1, std::string_view(sha)).bind_blob(2, der->data(), der->size());
          insert_cert_->bind(3, subject).bind(4, issuer).bind(5, std::optional<int64_t>(observed_ms));
          if (auto ok = insert_cert_->run(); !ok) return tl::unexpected(ok.error());
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

tl::expected<bool, Error> Store::add_record(int64_t run, const std::string& vantage, const Json& record) {
  auto ix = index_record(record);
  if (!ix) return tl::unexpected(ix.error());
  int64_t observed = ix->observed_ms.value_or(now_ms());
  auto body = move_chains_out(record, observed);
  if (!body) return tl::unexpected(body.error());
  // The identity is the hash of what is stored: the record with its chains
  // as certificate hashes, a function of the record alone, and one dump less.
  std::string text = canonical(*body);
  auto content = sha256(text);

  auto& s = *insert_record_;
  s.bind(1, run).bind_blob(2, content.data(), content.size()).bind(3, std::string_view(ix->kind));
  s.bind(4, ix->observed_ms).bind(5, ix->target).bind(6, ix->sni).bind(7, ix->verdict).bind(8, ix->issuer);
  s.bind(9, ix->leaf_sha256).bind(10, ix->control_leaf_sha256).bind(11, ix->injector_hop);
  s.bind(12, ix->hop_before).bind(13, ix->hop_after).bind(14, std::string_view(text));
  if (auto ok = s.run(); !ok) return tl::unexpected(ok.error());
  if (db_.changes() == 0) return false;  // the run held it already

  auto is = [&](const char* v) -> int64_t { return ix->verdict == v ? 1 : 0; };
  upsert_run_stats_->bind(1, run).bind(2, is("intercepted")).bind(3, is("blocked")).bind(4, is("clean"));
  upsert_run_stats_->bind(5, is("unreachable"));
  if (auto ok = upsert_run_stats_->run(); !ok) return tl::unexpected(ok.error());
  touch_run_->bind(1, run).bind(2, observed);
  if (auto ok = touch_run_->run(); !ok) return tl::unexpected(ok.error());

  bool judged = (ix->kind == "scan" || ix->kind == "sweep") && ix->verdict;
  if (judged && ix->target) {
    upsert_target_->bind(1, std::string_view(vantage)).bind(2, std::string_view(ix->kind)).bind(3, *ix->target);
    upsert_target_->bind(4, is("intercepted")).bind(5, *ix->verdict).bind(6, observed);
    if (auto ok = upsert_target_->run(); !ok) return tl::unexpected(ok.error());
  }
  if (judged && ix->sni) {
    upsert_sni_->bind(1, std::string_view(vantage)).bind(2, std::string_view(ix->kind)).bind(3, *ix->sni);
    upsert_sni_->bind(4, is("intercepted")).bind(5, observed);
    if (auto ok = upsert_sni_->run(); !ok) return tl::unexpected(ok.error());
  }
  if (ix->issuer && (judged || ix->kind == "trace")) {
    upsert_issuer_->bind(1, *ix->issuer).bind(2, observed);
    if (auto ok = upsert_issuer_->run(); !ok) return tl::unexpected(ok.error());
  }
  return true;
}

tl::expected<void, Error> Store::finish_run(int64_t run, const std::string& status) {
  auto s = db_.prepare(
      "UPDATE runs SET status = ?2, ended_ms = CASE WHEN ?2 = 'imported' THEN ended_ms "
      "ELSE max(coalesce(ended_ms, 0), ?3) END, started_ms = coalesce(started_ms, ?3) WHERE id = ?1");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, run).bind(2, std::string_view(status)).bind(3, now_ms());
  return s->run();
}

tl::expected<int64_t, Error> Store::add_event(const Event& e) {
  auto s = db_.prepare(
      "INSERT INTO events(run_id, series, vantage, at_ms, type, subject, details) VALUES(?1,?2,?3,?4,?5,?6,?7)");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, e.run_id).bind(2, std::string_view(e.series)).bind(3, std::string_view(e.vantage)).bind(4, e.at_ms);
  s->bind(5, std::string_view(e.type)).bind(6, std::string_view(e.subject)).bind(7, std::string_view(canonical(e.details)));
  if (auto ok = s->run(); !ok) return tl::unexpected(ok.error());
  return db_.last_insert_id();
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
  auto s = db_.prepare("SELECT body FROM records WHERE run_id = ?1 ORDER BY id");
  if (!s) return tl::unexpected(s.error());
  s->bind(1, run);
  for (;;) {
    auto row = s->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return {};
    auto body = Json::parse(s->text(0), nullptr, false);
    if (body.is_discarded()) return tl::unexpected(fmt::format("{}: run {}: a stored record is not JSON", db_.path(), run));
    if (auto ok = restore_chains(body); !ok) return tl::unexpected(ok.error());
    visit(body);
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
  auto added = store_.add_record(*run_, info_.vantage, record);
  if (!added) return tl::unexpected(added.error());
  if (*added) ++added_;
  if (++pending_ >= batch_ || now_ms() - opened_ms_ >= interval_ms_) return flush();
  return {};
}

tl::expected<void, Error> RunWriter::flush() {
  if (!open_) return {};
  auto ok = open_->commit();
  open_.reset();
  pending_ = 0;
  return ok;
}

tl::expected<void, Error> RunWriter::finish(const std::string& status) {
  if (auto ok = flush(); !ok) return ok;
  if (!run_) return {};
  return store_.finish_run(*run_, status);
}

}  // namespace mw::store
