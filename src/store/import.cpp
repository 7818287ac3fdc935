#include "store/import.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace mw::store {

tl::expected<ImportStats, Error> import_jsonl(Store& store, const std::string& path, RunInfo info,
                                              const std::function<void(uint64_t)>& progress, size_t batch) {
  std::unique_ptr<FILE, int (*)(FILE*)> in(path == "-" ? fdopen(dup(0), "r") : std::fopen(path.c_str(), "r"),
                                           &std::fclose);
  if (!in) return tl::unexpected(fmt::format("{}: {}", path, std::strerror(errno)));
  if (info.source.empty()) info.source = path;
  ImportStats stats;
  std::optional<int64_t> run;
  std::optional<Transaction> tx;
  size_t pending = 0;
  uint64_t bytes = 0;
  // getline(3) grows one buffer across lines; freed however the loop ends.
  struct LineBuffer {
    char* data = nullptr;
    size_t capacity = 0;
    ~LineBuffer() { std::free(data); }
  } line_buffer;
  for (;;) {
    ssize_t n = getline(&line_buffer.data, &line_buffer.capacity, in.get());
    if (n < 0) break;
    const char* buf = line_buffer.data;
    bytes += static_cast<uint64_t>(n);
    if (buf[n - 1] != '\n') {  // a killed writer's torn line: not a record
      stats.torn_last_line = true;
      break;
    }
    ++stats.lines;
    std::string_view line(buf, static_cast<size_t>(n - 1));
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto record = Json::parse(line, nullptr, false);
    auto where = [&](const std::string& what) { return fmt::format("{}:{}: {}", path, stats.lines, what); };
    if (record.is_discarded()) return tl::unexpected(where("not JSON"));
    if (!run) {  // the first record names the run (add_record checks every later one)
      auto ix = index_record(record);
      if (!ix) return tl::unexpected(where(ix.error()));
      if (info.command.empty()) info.command = ix->kind;
      auto id = store.begin_run(run_uid_of_first_record(record), info);
      if (!id) return tl::unexpected(id.error());
      run = stats.run_id = *id;
    }
    if (!tx) {
      auto t = store.transaction();
      if (!t) return tl::unexpected(t.error());
      tx.emplace(std::move(*t));
    }
    auto added = store.add_record(*run, info.vantage, record);
    if (!added) return tl::unexpected(where(added.error()));
    ++(*added ? stats.added : stats.already);
    if (++pending >= batch) {
      if (auto ok = tx->commit(); !ok) return tl::unexpected(ok.error());
      tx.reset();
      pending = 0;
      if (progress) progress(bytes);
    }
  }
  if (std::ferror(in.get())) return tl::unexpected(fmt::format("{}: read error: {}", path, std::strerror(errno)));
  if (tx)
    if (auto ok = tx->commit(); !ok) return tl::unexpected(ok.error());
  if (run)
    if (auto ok = store.finish_run(*run, "imported"); !ok) return tl::unexpected(ok.error());
  if (progress) progress(bytes);
  return stats;
}

}  // namespace mw::store
