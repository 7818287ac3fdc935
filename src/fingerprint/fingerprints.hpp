// Fingerprints of a ClientHello / ServerHello, each exactly as its reference
// defines it (the project's field names: ja3, ja3s, ja4, ja4s, tlsfp):
// - JA3 / JA3S: salesforce/ja3. Decimal, wire order, GREASE removed, MD5.
// - JA4 (+ _r raw, _o original order, _ro both): FoxIO's JA4 spec (BSD-3).
// - JA4S (+ _r): FoxIO's JA4+ spec. JA4S is under the FoxIO License 1.1,
//   which allows use but not selling it as a product or service; mitmwatch
//   computes it for research and says so in docs/fingerprints.md.
// - tlsfp: the tlsfingerprint.io id (refraction-networking/tls-fingerprint,
//   "v2"): SHA-1 over the record and hello versions and length-prefixed
//   fields, GREASE mapped to 0x0a0a; the first 8 bytes as 16 hex digits.
#pragma once

#include "fingerprint/hello.hpp"

#include <string>

namespace mw::fingerprint {

struct Ja3 {
  std::string full;  // "771,4865-4866-...,0-23-...,29-23-24,0"
  std::string hash;  // MD5 of `full`, hex
};

struct Ja4 {
  std::string ja4, ja4_r, ja4_o, ja4_ro;
};

struct Ja4s {
  std::string ja4s, ja4s_r;
};

// transport: 't' TCP, 'q' QUIC, 'd' DTLS.
Ja3 ja3(const ClientHello& h);
Ja3 ja3s(const ServerHello& h);
// `original_order` false leaves ja4_o and ja4_ro empty (two hashes fewer).
Ja4 ja4(const ClientHello& h, char transport = 't', bool original_order = true);
Ja4s ja4s(const ServerHello& h, char transport = 't');
std::string tlsfp(const ClientHello& h);

// Two-letter JA4 version: "13", "12", "11", "10", "s3", "s2", "s1", else "00".
std::string ja4_version(uint16_t version);

}  // namespace mw::fingerprint
