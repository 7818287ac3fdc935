// Where a command's records go: the JSON Lines output as always, and with
// --db also the store, as one run. The JSONL line is written first: the file
// stays the exchange format and the record of truth, the store a copy that
// `mitmwatch import` can always rebuild.
#pragma once

#include "io/jsonl.hpp"
#include "store/store.hpp"

#include <memory>
#include <optional>
#include <string>

namespace mw::store {

struct SinkOptions {
  std::string output = "-";  // "-": stdout
  bool append = false;       // --resume: keep what the file holds
  std::string db;            // empty: no store
  RunInfo run;
  size_t batch = 500;  // records a transaction; 1 for a server whose records come seldom
};

class RecordSink {
 public:
  static tl::expected<RecordSink, Error> open(SinkOptions options);
  tl::expected<void, Error> write(const nlohmann::ordered_json& record);
  tl::expected<void, Error> write(const nlohmann::json& record);
  // A line that is not a record (e.g. --select-trusted's addresses): the file only.
  tl::expected<void, Error> write_plain_line(std::string line);
  // Lines of JSON records, '\n'-separated (the pcap reader's batches).
  tl::expected<void, Error> write_lines(std::string lines);
  tl::expected<void, Error> sync();
  // Commits the store's last batch and marks the run "complete" or "interrupted".
  tl::expected<void, Error> finish(bool complete);
  std::optional<int64_t> run_id() const { return writer_ ? writer_->run_id() : std::nullopt; }

 private:
  RecordSink() = default;
  std::optional<io::JsonlWriter> file_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RunWriter> writer_;
};

}  // namespace mw::store
