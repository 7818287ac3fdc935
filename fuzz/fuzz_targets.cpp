// Target lists, blocklists and shard specs: text from users' files.
#include "net/targets.hpp"

#include <sstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  // Names are not resolved: a fuzzer must not send DNS queries.
  (void)mw::net::parse_target(text, 443, false);
  (void)mw::net::Shard::parse(text);
  std::istringstream targets_in(text);
  if (auto specs = mw::net::read_targets(targets_in, "fuzz", 443, false)) {
    mw::net::TargetFilter filter;
    filter.allow_reserved = true;
    mw::net::TargetStream stream(*specs, filter);
    for (int i = 0; i < 64 && stream.next(); ++i) {
    }
  }
  std::istringstream blocklist_in(text);
  if (auto bl = mw::net::read_blocklist(blocklist_in, "fuzz"); bl && !bl->empty()) {
    auto probe = mw::net::IpAddress::parse("192.0.2.1");
    for (const auto& p : *bl) (void)p.contains(*probe);
  }
  return 0;
}
