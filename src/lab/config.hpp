// The lab's configuration (TOML; data/lab.toml is the default, compiled in).
#pragma once

#include "net/address.hpp"

#include <tl/expected.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace mw::lab {

struct VantageConfig {
  std::string name;
  int attach = 1;  // router it hangs off
};

struct PrefixConfig {
  std::string name;
  net::Prefix cidr;
  int servers = 0;
  int untrusted = 0;
  int attach = 1;
  bool via_device = true;
  // Hostile servers: their modes in turn, server by server ("garbage", "drip",
  // "stall", "reset", "never-finish", "huge-hello", "huge-chain"); empty: none.
  std::vector<std::string> hostile;
};

struct ForgeryConfig {
  int validity_shift_hours = -6;
  int serial_low_bits_replaced = 33;
  int rsa_bits = 2048;
  unsigned long rsa_exponent = 3;
  std::string root_name = "Qaznet Trust Network";
  std::string intermediate_name = "Security Certificate";
  std::string country = "KZ";
};

// How the device matches a ClientHello's server_name against its triggers:
// every option `sweep --infer-rule` can tell apart.
enum class TriggerMatch { exact, subdomains, suffix, substring };
const char* to_string(TriggerMatch m);

struct DeviceConfig {
  bool enabled = true;
  TriggerMatch match = TriggerMatch::subdomains;
  bool case_sensitive = false;
  bool last_sni_entry = false;       // reads the last host_name entry (else the first)
  bool reassemble_segments = false;  // buffers a hello split over TCP segments (else passes the flow)
  bool reassemble_records = false;   // joins a hello split over TLS records (else reads the first record only)
  double fraction = 1.0;
  std::vector<std::string> triggers;  // empty in the file: the report's 37
  std::vector<std::string> schedule;  // "TIME:STATE" steps from `lab up` (lab/schedule.hpp)
};

struct LabConfig {
  std::string name = "lab";
  int routers = 6;
  int device_after = 4;  // 0: no device
  int link_delay_ms = 0;       // added by every router to what it sends
  int icmp_ratelimit_ms = 10;  // routers' net.ipv4.icmp_ratelimit (per destination)
  std::vector<int> silent_routers;  // routers that send no ICMP time-exceeded
  DeviceConfig device;
  ForgeryConfig forgery;
  std::vector<VantageConfig> vantages;
  std::vector<PrefixConfig> prefixes;
  std::string source_toml;  // the text it was read from, saved with a running lab
};

// `origin` names the input in errors ("lab.toml: prefixes[1].cidr: ...").
tl::expected<LabConfig, std::string> parse_lab_config(std::string_view toml_text, const std::string& origin);
tl::expected<LabConfig, std::string> load_lab_config(const std::string& path);
LabConfig default_lab_config();
std::string_view default_lab_toml();

}  // namespace mw::lab
