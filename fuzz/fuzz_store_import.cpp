// The store's import of JSON Lines written by anyone: records indexed,
// chains moved to the certificate table and restored, summaries kept and
// read back by the views.
// One in-memory store serves every input (opening one runs the schema's
// migrations); each input is imported into a write transaction that is rolled
// back afterwards, so every input meets the same empty store (an input that
// crashes reproduces alone) and the rollback path is fuzzed too. The input
// goes to an in-memory file (memfd).
#include "store/import.hpp"
#include "store/views.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int fd = memfd_create("fuzz-store", 0);
  static std::unique_ptr<mw::store::Store> st = [] {
    auto s = mw::store::Store::open(":memory:");
    return s ? std::make_unique<mw::store::Store>(std::move(*s)) : nullptr;
  }();
  if (!st || fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  auto tx = st->transaction();
  if (!tx) return 0;
  mw::store::RunInfo info;
  info.vantage = "fuzz";
  auto stats = mw::store::import_jsonl(*st, "/proc/self/fd/" + std::to_string(fd), info, nullptr, 5000, &*tx);
  if (stats && stats->run_id) {
    (void)st->for_each_record(stats->run_id, [](const nlohmann::ordered_json& r) { (void)r.dump(); });
    (void)mw::store::series_points(*st);
    (void)mw::store::domains(*st);
    (void)mw::store::hop_pairs(*st);
    (void)mw::store::compare_vantages(*st);
  }
  return 0;  // `tx` rolls back
}
