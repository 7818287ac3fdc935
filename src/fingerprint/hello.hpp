// ClientHello and ServerHello as they were on the wire: every field in wire
// order, GREASE and unknown extensions kept, which OpenSSL 3.0 does not give
// (it hides GREASE and unknown extensions and cannot tell extension order).
// Written by hand for that reason. Parsers are bounded: they never read past
// the message, never trust a length, never throw; a lying length ends the
// parse with an error that says which field lied.
#pragma once

#include <tl/expected.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mw::fingerprint {

using Bytes = std::span<const uint8_t>;

// RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa.
bool is_grease(uint16_t value);

namespace ext {
inline constexpr uint16_t kServerName = 0x0000, kSupportedGroups = 0x000a, kEcPointFormats = 0x000b,
                          kSignatureAlgorithms = 0x000d, kAlpn = 0x0010, kCompressCertificate = 0x001b,
                          kRecordSizeLimit = 0x001c, kSupportedVersions = 0x002b, kPskModes = 0x002d,
                          kKeyShare = 0x0033;
}  // namespace ext

struct Extension {
  uint16_t type = 0;
  std::vector<uint8_t> data;  // the extension's body, its own length prefix(es) included
};

struct ClientHello {
  uint16_t record_version = 0;  // the version on the first record that carried it
  uint16_t version = 0;         // legacy_version
  std::vector<uint8_t> session_id;
  std::vector<uint16_t> ciphers;  // wire order, GREASE kept
  std::vector<uint8_t> compression;
  std::vector<Extension> extensions;  // wire order, GREASE kept

  // Decoded from the extensions (GREASE kept where the list has it):
  std::optional<std::string> sni;         // first host_name entry
  std::vector<std::string> server_names;  // every host_name entry, in order
  std::vector<std::string> alpn;
  std::vector<uint16_t> groups, signature_algorithms, supported_versions;
  std::vector<uint8_t> point_formats;
};

struct ServerHello {
  uint16_t record_version = 0;
  uint16_t version = 0;  // legacy_version
  uint16_t cipher = 0;
  uint8_t compression = 0;
  std::vector<Extension> extensions;
  std::optional<uint16_t> selected_version;  // supported_versions (TLS 1.3)
  std::optional<std::string> alpn;
  bool hello_retry_request = false;  // RFC 8446 4.1.3: the special random

  // The version that was agreed: supported_versions when present, else legacy_version.
  uint16_t negotiated_version() const { return selected_version.value_or(version); }
};

// `body` is the handshake message body (after the 4-byte handshake header).
tl::expected<ClientHello, std::string> parse_client_hello(Bytes body, uint16_t record_version = 0);
tl::expected<ServerHello, std::string> parse_server_hello(Bytes body, uint16_t record_version = 0);
// The certificate_list of a TLS 1.0-1.2 Certificate message: DER per entry, leaf first.
tl::expected<std::vector<std::vector<uint8_t>>, std::string> parse_certificate_list(Bytes body);

}  // namespace mw::fingerprint
