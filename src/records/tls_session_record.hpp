// The JSON Lines record of one TLS connection read from a capture
// (`mitmwatch pcap`, schema mitmwatch.pcap/1), and the signs of interception
// it shows. Field names are defined here only.
#pragma once

#include "certs/registry.hpp"
#include "fingerprint/fingerprint_registry.hpp"
#include "pcap/tls_sessions.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace mw::records {

inline constexpr const char* kPcapSchema = "mitmwatch.pcap/1";

struct SessionContext {
  std::string file;
  const certs::InterceptorRegistry* interceptors = nullptr;
  const fingerprint::FingerprintRegistry* fingerprints = nullptr;
  // The strings the hashes are made of (ja3_full, ja4_r, ja4_o, ja4_ro,
  // ja3s_full, ja4s_r), as the JA4 tool's -r/-o: off by default, they
  // triple a record's size.
  bool raw = false;
};

// IP IDs shown per direction in a record (the analysis sees more).
inline constexpr size_t kIpIdsShown = 16;

// A server-side IP ID step larger than this between consecutive packets
// breaks the sequence (Linux counts per connection, +1 a packet).
inline constexpr uint32_t kIpIdJump = 1024;

nlohmann::ordered_json to_json(const pcap::TlsSession& s, const SessionContext& ctx);

}  // namespace mw::records
