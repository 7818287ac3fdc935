// A TLS client handshake as a non-blocking state machine: connect, then
// SSL_connect until the server's chain is in hand, then close. The caller's
// event loop waits on fd() for want(); nothing here blocks.
#pragma once

#include "net/address.hpp"
#include "net/fd.hpp"
#include "tls/observation.hpp"
#include "tls/ossl.hpp"
#include "tls/probe.hpp"

#include <tl/expected.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace mw::tls {

// One SSL_CTX per probe profile, made once: OpenSSL 3.0 is slow to build them.
class ClientProfile {
 public:
  static tl::expected<ClientProfile, std::string> browser_like();
  // browser_like, offering TLS 1.3 only (sweep's tls13 variant).
  static tl::expected<ClientProfile, std::string> tls13_only();
  SSL_CTX* get() const { return ctx_.get(); }

 private:
  SslCtxPtr ctx_;
};

// Copies version, cipher, ALPN and the peer's chain out of a session.
void capture_session(SSL* ssl, Observation& obs);

class Handshake final : public Probe {
 public:

  Handshake(const ClientProfile& profile, const net::Endpoint& target, std::string sni,
            const std::optional<net::IpAddress>& source);
  Handshake(const Handshake&) = delete;
  Handshake& operator=(const Handshake&) = delete;

  Want start() override;
  Want on_ready() override;
  void time_out() override;
  int fd() const override { return fd_.get(); }
  bool connecting() const override { return phase_ == Phase::connecting; }
  Observation take() override { return std::move(obs_); }

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
