// A TLS client handshake as a non-blocking state machine: connect, then
// SSL_connect until the server's chain is in hand, then close. The caller's
// event loop waits on fd() for want(); nothing here blocks.
#pragma once

#include "net/address.hpp"
#include "net/fd.hpp"
#include "tls/observation.hpp"
#include "tls/ossl.hpp"

#include <tl/expected.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace mw::tls {

// One SSL_CTX per probe profile, made once: OpenSSL 3.0 is slow to build them.
class ClientProfile {
 public:
  static tl::expected<ClientProfile, std::string> browser_like();
  SSL_CTX* get() const { return ctx_.get(); }

 private:
  SslCtxPtr ctx_;
};

// Copies version, cipher, ALPN and the peer's chain out of a session.
void capture_session(SSL* ssl, Observation& obs);

class Handshake {
 public:
  enum class Want { read, write, done };
  using Clock = std::chrono::steady_clock;

  Handshake(const ClientProfile& profile, const net::Endpoint& target, std::string sni,
            const std::optional<net::IpAddress>& source);
  Handshake(const Handshake&) = delete;
  Handshake& operator=(const Handshake&) = delete;

  Want start();
  Want on_ready();
  // The deadline passed: records connect-timeout or handshake-timeout.
  void time_out();

  int fd() const { return fd_.get(); }
  bool connecting() const { return phase_ == Phase::connecting; }
  // Moves the observation out; valid once want() is done.
  Observation take() { return std::move(obs_); }

 private:
  enum class Phase { connecting, handshaking, done };
  Want fail(ProbeError error, std::string detail);
  Want begin_tls();
  Want step_tls();
  static void on_info(const SSL* ssl, int where, int ret);

  const ClientProfile& profile_;
  net::Endpoint target_;
  std::optional<net::IpAddress> source_;
  net::Fd fd_;
  SslPtr ssl_;
  Phase phase_ = Phase::connecting;
  Clock::time_point t_start_, t_connected_;
  int alert_received_ = -1;
  Observation obs_;
};

}  // namespace mw::tls
