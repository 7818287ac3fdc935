#include "store/import.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace mw::store {

tl::expected<ImportStats, Error> import_jsonl(Store& store, const std::string& path, RunInfo info,
                                              const std::function<void(uint64_t)>& progress, size_t batch,
                                              WriteTransaction* within) {
  std::unique_ptr<FILE, int (*)(FILE*)> in(path == "-" ? fdopen(dup(0), "r") : std::fopen(path.c_str(), "r"),
                                           &std::fclose);
  if (!in) return tl::unexpected(fmt::format("{}: {}", path, std::strerror(errno)));
  if (info.source.empty()) info.source = path;
  ImportStats stats;
  std::optional<int64_t> run;
  std::optional<WriteTransaction> own;
  WriteTransaction* tx = within;
  size_t pending = 0;
  uint64_t bytes = 0;
  // A batch is committed on its own, or flushed into the caller's transaction.
  auto end_batch = [&]() -> tl::expected<void, Error> {
    if (!tx) return {};
    auto written = own ? tx->commit() : tx->flush();
    if (!written) return tl::unexpected(written.error());
    stats.added += written->added;
    stats.already += written->already;
    if (own) {
      own.reset();
      tx = nullptr;
    }
    pending = 0;
    return {};
  };
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
      own.emplace(std::move(*t));
      tx = &*own;
    }
    if (auto ok = store.add_record(*run, info.vantage, record); !ok) return tl::unexpected(where(ok.error()));
    if (++pending >= batch) {
      if (auto ok = end_batch(); !ok) return tl::unexpected(ok.error());
      if (progress) progress(bytes);
    }
  }
  if (std::ferror(in.get())) return tl::unexpected(fmt::format("{}: read error: {}", path, std::strerror(errno)));
  if (auto ok = end_batch(); !ok) return tl::unexpected(ok.error());
  if (run && !within)
    if (auto ok = store.finish_run(*run, "imported"); !ok) return tl::unexpected(ok.error());
  if (progress) progress(bytes);
  return stats;
}

}  // namespace mw::store
