// JSON read back from files: the interceptor registry, the device
// fingerprint registry, fpserver's --expect and --browsers files, and scan
// records when a scan resumes.
#include "certs/registry.hpp"
#include "fingerprint/expectations.hpp"
#include "fingerprint/fingerprint_registry.hpp"
#include "fingerprint/site_verdict.hpp"
#include "io/jsonl.hpp"
#include "records/scan_record.hpp"

#include <sstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)mw::certs::InterceptorRegistry::from_json(text, "fuzz");
  (void)mw::fingerprint::FingerprintRegistry::from_json(text, "fuzz");
  if (auto e = mw::fingerprint::Expectations::from_json(text, "fuzz"))
    (void)e->check(*mw::net::IpAddress::parse("10.61.0.2"), "curl/8", {"a", "b", "c"});
  if (auto t = mw::fingerprint::BrowserTable::from_json(text, "fuzz")) {
    (void)t->claimed_by("Mozilla/5.0 Chrome/156");
    (void)t->fitting("t13d1516h2_8daaf6152771_e5627efa2ab1");
  }
  // Resume: a results file with this content, read back to its last complete line.
  std::istringstream in{std::string(text)};
  (void)mw::io::read_complete_lines(in, "fuzz", [](const nlohmann::json& r) { (void)mw::records::record_key(r); });
  return 0;
}
