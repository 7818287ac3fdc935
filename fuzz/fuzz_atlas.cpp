// RIPE Atlas files: sslcert results and probe metadata, as anyone may hand them over.
#include "drivers/atlas.hpp"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)mw::drivers::parse_atlas_sslcert(text, "fuzz", "facebook.com");
  (void)mw::drivers::parse_atlas_probes(text, "fuzz");
  return 0;
}
