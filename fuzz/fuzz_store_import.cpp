// The store's import of JSON Lines written by anyone: records indexed,
// chains moved to the certificate table and restored, summaries kept.
// One in-memory store serves a few thousand inputs before it is made anew
// (opening one runs the schema's migrations, most of an input's cost), and
// the input goes to an in-memory file (memfd).
#include "store/import.hpp"
#include "store/views.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int fd = memfd_create("fuzz-store", 0);
  static std::unique_ptr<mw::store::Store> st;
  static int uses = 0;
  if (!st || ++uses % 4000 == 0) {
    auto s = mw::store::Store::open(":memory:");
    if (!s) return 0;
    st = std::make_unique<mw::store::Store>(std::move(*s));
  }
  if (fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  mw::store::RunInfo info;
  info.vantage = "fuzz";
  if (auto stats = mw::store::import_jsonl(*st, "/proc/self/fd/" + std::to_string(fd), info); stats && stats->run_id) {
    (void)st->for_each_record(stats->run_id, [](const nlohmann::ordered_json& r) { (void)r.dump(); });
    if (uses % 64 == 0) {  // the views read the summaries many inputs built
      (void)mw::store::series_points(*st);
      (void)mw::store::domains(*st);
      (void)mw::store::hop_pairs(*st);
      (void)mw::store::compare_vantages(*st);
    }
  }
  return 0;
}
