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

#include "store/database.hpp"

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
// $XDG_DATA_HOME/mitmwatch, else ~/.local/share/mitmwatch.
std::string default_data_dir();
// $MITMWATCH_DB, else mitmwatch.db in default_data_dir().
std::string default_db_path();
// Where files that belong with a store go (a monitor's rounds): beside a
// SQLite file, else default_data_dir().
std::string files_dir_of(const std::string& where);
// "sha256:<hex>" of the canonical dump of `record`.
std::string run_uid_of_first_record(const Json& record);

// What a write transaction's staged records came to.
struct WriteStats {
  uint64_t added = 0;    // new to their run
  uint64_t already = 0;  // the run held them (or the batch did, twice)
};

class WriteTransaction;

class Store {
 public:
  // `where`: a SQLite file, created with its directory when missing, or a
  // postgresql:// URL. Either way the schema is brought up to date.
  static tl::expected<Store, Error> open(const std::string& where);
  static tl::expected<Store, Error> open_read_only(const std::string& where);
  Store(Store&&) noexcept;
  Store& operator=(Store&&) = delete;
  ~Store();

  // The run named `uid`, created with `info` when new. Its id.
  tl::expected<int64_t, Error> begin_run(const std::string& uid, const RunInfo& info);
  // Stages a record of `run` (whose vantage is `vantage`) in the open write
  // transaction; it is written with its certificates and summaries when the
  // transaction flushes or commits, and counted there as added or already held.
  tl::expected<void, Error> add_record(int64_t run, const std::string& vantage, const Json& record);
  // status: "complete", "interrupted", "imported".
  tl::expected<void, Error> finish_run(int64_t run, const std::string& status);
  tl::expected<int64_t, Error> add_event(const Event& e);
  tl::expected<WriteTransaction, Error> transaction();

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
  Dialect dialect() const { return db_.dialect(); }

 private:
  friend class WriteTransaction;
  struct Staged;
  explicit Store(Database db);
  tl::expected<void, Error> prepare_writes();
  tl::expected<Json, Error> move_chains_out(const Json& record, int64_t observed_ms);
  tl::expected<void, Error> restore_chains(Json& body);
  // Writes what is staged (certificates, summaries, records), set by set.
  tl::expected<WriteStats, Error> write_staged();
  void end_transaction(bool committed);

  Database db_;
  std::vector<Statement> merge_;  // write_staged's statements, in order
  std::unique_ptr<Staged> staged_;
  bool in_transaction_ = false;
  std::vector<std::string> uncommitted_certs_;  // written in the open transaction, forgotten if it rolls back
  std::unordered_set<std::string> known_certs_;  // saves a write per repeated certificate
  std::unordered_map<std::string, std::string> sha_of_base64_;  // saves decoding and hashing a repeated one
};

// A write transaction of the store (BEGIN IMMEDIATE on SQLite). Records
// staged by add_record are written by flush() and commit(); a transaction
// that dies uncommitted rolls back and drops them.
class WriteTransaction {
 public:
  WriteTransaction(WriteTransaction&& o) noexcept;
  WriteTransaction& operator=(WriteTransaction&&) = delete;
  ~WriteTransaction();
  // Writes what is staged and keeps the transaction open (a big import's batches).
  tl::expected<WriteStats, Error> flush();
  tl::expected<WriteStats, Error> commit();

 private:
  friend class Store;
  WriteTransaction(Store* store, Transaction tx) : store_(store), tx_(std::move(tx)) {}
  Store* store_;
  std::optional<Transaction> tx_;
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
  std::optional<WriteTransaction> open_;
  size_t batch_, pending_ = 0, added_ = 0;
  int64_t interval_ms_, opened_ms_ = 0;
};

}  // namespace mw::store
