// A TLS client handshake over memory buffers instead of a socket: the caller
// moves the bytes. The trace needs this because it sends the ClientHello
// itself, on a socket whose IP TTL it has just lowered, and must see the
// first answer byte to tell a TLS answer from a reset or from silence.
// OpenSSL still does all of TLS (1.3 included: the chain is encrypted there,
// so only the real handshake can read it).
#pragma once

#include "tls/client.hpp"
#include "tls/observation.hpp"
#include "tls/ossl.hpp"

#include <span>
#include <string>
#include <vector>

namespace mw::tls {

class MemoryHandshake {
 public:
  enum class State { need_more, chain_ready, alert, failed };

  // Makes the ClientHello for `sni` (empty: none); nullopt-like empty on failure.
  MemoryHandshake(const ClientProfile& profile, std::string sni);
  MemoryHandshake(const MemoryHandshake&) = delete;
  MemoryHandshake& operator=(const MemoryHandshake&) = delete;

  // The bytes to send first (the ClientHello record); empty if OpenSSL failed.
  const std::vector<uint8_t>& client_hello() const { return hello_; }
  // Feeds bytes from the server; says whether the chain is in hand.
  State feed(std::span<const uint8_t> bytes);
  // True once a byte arrived that opens a TLS handshake record (0x16).
  bool saw_handshake_record() const { return saw_handshake_; }
  Observation& observation() { return obs_; }

 private:
  static void on_info(const SSL* ssl, int where, int ret);
  SslPtr ssl_;
  BIO* in_ = nullptr;   // owned by ssl_
  BIO* out_ = nullptr;  // owned by ssl_
  std::vector<uint8_t> hello_;
  bool first_byte_seen_ = false;
  bool saw_handshake_ = false;
  int alert_received_ = -1;
  Observation obs_;
};

}  // namespace mw::tls
