// The server_name of a TLS ClientHello, read from raw bytes: bounded, never
// trusts a length, never throws (PcapPlusPlus's habit: check and stop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace mw::fingerprint {

enum class HelloStatus { ok, incomplete, not_client_hello };

struct SniResult {
  HelloStatus status = HelloStatus::not_client_hello;
  std::optional<std::string> sni;  // absent when the hello has no server_name
};

// `data` starts at a TLS record (content type 22). A ClientHello longer than
// `size` gives `incomplete` (it continues in later records or segments).
SniResult client_hello_sni(const uint8_t* data, size_t size);

}  // namespace mw::fingerprint
