// Lab configuration files (TOML) as users write them.
#include "lab/config.hpp"
#include "lab/plan.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = mw::lab::parse_lab_config(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml");
  if (config && config->routers <= 30) (void)mw::lab::plan_lab(*config);
  return 0;
}
