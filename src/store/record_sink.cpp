#include "store/record_sink.hpp"

#include "store/import.hpp"

#include <fstream>

namespace mw::store {

tl::expected<RecordSink, Error> RecordSink::open(SinkOptions o) {
  RecordSink sink;
  if (!o.db.empty()) {
    auto store = Store::open(o.db);
    if (!store) return tl::unexpected("--db " + store.error());
    sink.store_ = std::make_unique<Store>(std::move(*store));
    // A resumed file is the same run: named by its first line, as on import.
    std::string uid;
    if (o.append && o.output != "-") {
      std::ifstream in(o.output);
      std::string first;
      if (in && std::getline(in, first) && !first.empty() && in.good()) {
        auto j = nlohmann::ordered_json::parse(first, nullptr, false);
        if (!j.is_discarded()) uid = run_uid_of_first_record(j);
      }
    }
    if (o.run.source.empty()) o.run.source = o.output == "-" ? "live" : o.output;
    // What a killed run wrote to its file but had not committed to the store
    // goes in first: the resumed part never sends those records again.
    if (!uid.empty()) {
      auto caught_up = import_jsonl(*sink.store_, o.output, o.run);
      if (!caught_up) return tl::unexpected("--db: catching up with " + o.output + ": " + caught_up.error());
    }
    sink.writer_ = std::make_unique<RunWriter>(*sink.store_, o.run, uid, o.batch);
  }
  auto file = io::JsonlWriter::open(o.output, o.append);
  if (!file) return tl::unexpected(file.error());
  sink.file_.emplace(std::move(*file));
  return sink;
}

tl::expected<void, Error> RecordSink::write(const nlohmann::ordered_json& record) {
  if (auto ok = file_->write(record); !ok) return ok;
  if (writer_) return writer_->add(record);
  return {};
}

tl::expected<void, Error> RecordSink::write(const nlohmann::json& record) {
  // One dump serves both: the file's line, and the store's ordered copy parsed from it.
  auto line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!writer_) return file_->write_line(std::move(line));
  auto ordered = nlohmann::ordered_json::parse(line);
  if (auto ok = file_->write_line(std::move(line)); !ok) return ok;
  return writer_->add(ordered);
}

tl::expected<void, Error> RecordSink::write_plain_line(std::string line) { return file_->write_line(std::move(line)); }

tl::expected<void, Error> RecordSink::write_lines(std::string lines) {
  if (writer_) {
    size_t start = 0;
    while (start < lines.size()) {
      size_t end = lines.find('\n', start);
      if (end == std::string::npos) end = lines.size();
      if (end > start) {
        auto j = nlohmann::ordered_json::parse(std::string_view(lines).substr(start, end - start), nullptr, false);
        if (j.is_discarded()) return tl::unexpected(Error("a record to store is not JSON"));
        if (auto ok = writer_->add(j); !ok) return ok;
      }
      start = end + 1;
    }
  }
  if (!lines.empty() && lines.back() == '\n') lines.pop_back();
  return file_->write_line(std::move(lines));
}

tl::expected<void, Error> RecordSink::sync() {
  if (writer_)
    if (auto ok = writer_->flush(); !ok) return ok;
  return file_->sync();
}

tl::expected<void, Error> RecordSink::finish(bool complete) {
  auto synced = file_->sync();
  if (writer_)
    if (auto ok = writer_->finish(complete ? "complete" : "interrupted"); !ok) return ok;
  return synced;
}

}  // namespace mw::store
