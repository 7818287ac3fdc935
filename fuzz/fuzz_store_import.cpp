// The store's import of JSON Lines written by anyone: records indexed,
// chains moved to the certificate table and restored, summaries kept.
#include "store/import.hpp"
#include "store/views.hpp"

#include <cstdio>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto st = mw::store::Store::open(":memory:");
  if (!st) return 0;
  char path[] = "/tmp/mwfuzz-store-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  [[maybe_unused]] auto n = write(fd, data, size);
  close(fd);
  mw::store::RunInfo info;
  info.vantage = "fuzz";
  if (auto stats = mw::store::import_jsonl(*st, path, info); stats && stats->run_id) {
    (void)st->for_each_record(stats->run_id, [](const nlohmann::ordered_json& r) { (void)r.dump(); });
    (void)mw::store::series_points(*st);
    (void)mw::store::domains(*st);
    (void)mw::store::hop_pairs(*st);
  }
  unlink(path);
  return 0;
}
