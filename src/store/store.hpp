// The store: one SQLite file (WAL) that remembers every run and record the
// project writes. JSON Lines stay the exchange format; the store keeps each
// record's JSON whole (chains moved out to a deduplicated certificate table)
// beside a few indexed columns, and summary tables kept current in the same
// transaction as the records, so a dashboard reads them without scanning.
//
// Identity, so that re-import is idempotent: a run is named by the SHA-256 of
// its first record (a resumed file keeps its first line, so it stays the same
// run), a record by the SHA-256 of its stored JSON (chains as hashes) within its run.
#pragma once

#include "store/sqlite.hpp"

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace mw::store {

using Json = nlohmann::ordered_json;

// What the store indexes of one record: decided in one place, per schema.
struct RecordIndex {
  std::string kind;  // "scan", "trace", "sweep", "sweep-rule", "fpserver", "pcap", "certdiff", "recipe"
  std::optional<std::string> target, sni, verdict, issuer, leaf_sha256, control_leaf_sha256;
  std::optional<std::string> hop_before, hop_after;
  std::optional<int64_t> observed_ms, injector_hop;
};
// Errors name what is wrong: not an object, no schema, not a mitmwatch schema.
tl::expected<RecordIndex, Error> index_record(const Json& record);

struct RunInfo {
  std::string command;  // "scan", "monitor", "import", ...
  std::string vantage;  // where it ran from; default: the host name
  std::string series;   // a monitor's name; empty otherwise
  std::string source;   // the JSONL file, or "live"
  std::string args;     // the command line, for people
  std::string tool_version = MW_VERSION;
};

struct RunRow {
  int64_t id = 0;
  std::string uid, command, vantage, series, source, status, tool_version;
  std::optional<int64_t> started_ms, ended_ms;
  int64_t records = 0, intercepted = 0, blocked = 0, clean = 0, unreachable = 0;
};

struct Event {
  int64_t id = 0;
  std::optional<int64_t> run_id;
  std::string series, vantage, type, subject;
  int64_t at_ms = 0;
  Json details = Json::object();
};

std::string host_name();
// $MITMWATCH_DB, else $XDG_DATA_HOME/mitmwatch/mitmwatch.db, else ~/.local/share/mitmwatch/mitmwatch.db.
std::string default_db_path();
// "sha256:<hex>" of the canonical dump of `record`.
std::string run_uid_of_first_record(const Json& record);

class Store {
 public:
  // Creates the file (and its directory) and the schema when missing.
  static tl::expected<Store, Error> open(const std::string& path);
  static tl::expected<Store, Error> open_read_only(const std::string& path);

  // The run named `uid`, created with `info` when new. Its id.
  tl::expected<int64_t, Error> begin_run(const std::string& uid, const RunInfo& info);
  // Adds a record to `run` (whose vantage is `vantage`); false when the run
  // already held it. Call inside a transaction for speed (see RunWriter).
  tl::expected<bool, Error> add_record(int64_t run, const std::string& vantage, const Json& record);
  // status: "complete", "interrupted", "imported".
  tl::expected<void, Error> finish_run(int64_t run, const std::string& status);
  tl::expected<int64_t, Error> add_event(const Event& e);
  tl::expected<Transaction, Error> transaction() { return Transaction::begin(db_); }

  // Reads.
  tl::expected<std::vector<RunRow>, Error> runs(const std::string& command = "", const std::string& series = "");
  tl::expected<std::optional<RunRow>, Error> run(int64_t id);
  // Every record of a run, as written (chains restored), in insertion order.
  tl::expected<void, Error> for_each_record(int64_t run, const std::function<void(const Json&)>& visit);
  tl::expected<std::optional<Json>, Error> record(int64_t id);
  tl::expected<std::vector<Event>, Error> events(const std::string& series = "", int64_t since_ms = 0);
  tl::expected<std::optional<std::vector<unsigned char>>, Error> certificate_der(const std::string& sha256);
  tl::expected<int64_t, Error> count(const std::string& table);

  Database& db() { return db_; }

 private:
  explicit Store(Database db) : db_(std::move(db)) {}
  tl::expected<void, Error> prepare_writes();
  tl::expected<Json, Error> move_chains_out(const Json& record, int64_t observed_ms);
  tl::expected<void, Error> restore_chains(Json& body);

  Database db_;
  std::optional<Statement> insert_record_, insert_cert_, upsert_run_stats_, upsert_target_, upsert_sni_,
      upsert_issuer_, touch_run_;
  std::unordered_set<std::string> known_certs_;  // saves a write per repeated certificate
  std::unordered_map<std::string, std::string> sha_of_base64_;  // saves decoding and hashing a repeated one
};

// Writes one live run into the store as its records come: batches them into
// transactions (every `batch` records or `interval_ms`), so a kill loses at
// most the uncommitted batch and never a committed one.
class RunWriter {
 public:
  RunWriter(Store& store, RunInfo info, std::string uid = {}, size_t batch = 500, int64_t interval_ms = 1000);
  RunWriter(const RunWriter&) = delete;
  ~RunWriter();
  tl::expected<void, Error> add(const Json& record);
  tl::expected<void, Error> flush();
  // Commits what is pending and marks the run.
  tl::expected<void, Error> finish(const std::string& status);
  std::optional<int64_t> run_id() const { return run_; }
  size_t added() const { return added_; }

 private:
  Store& store_;
  RunInfo info_;
  std::string uid_;
  std::optional<int64_t> run_;
  std::optional<Transaction> open_;
  size_t batch_, pending_ = 0, added_ = 0;
  int64_t interval_ms_, opened_ms_ = 0;
};

}  // namespace mw::store
