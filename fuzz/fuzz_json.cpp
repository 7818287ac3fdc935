// JSON read back from files: the interceptor registry, and scan records
// when a scan resumes.
#include "certs/registry.hpp"
#include "io/jsonl.hpp"
#include "records/scan_record.hpp"

#include <cstdio>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)mw::certs::InterceptorRegistry::from_json(text, "fuzz");
  // Resume: a results file with this content, recovered (and its torn tail cut).
  char path[] = "/tmp/mwfuzz-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  [[maybe_unused]] auto n = write(fd, data, size);
  close(fd);
  (void)mw::io::recover(path, [](const nlohmann::json& r) { (void)mw::records::record_key(r); });
  unlink(path);
  return 0;
}
