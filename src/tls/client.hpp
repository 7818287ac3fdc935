// A TLS client handshake as a non-blocking state machine: connect, then
// SSL_connect until the server's chain is in hand, then close. The caller's
// event loop waits on fd() for want(); nothing here blocks.
//
// With an identifying profile the probe also says who it is where HTTP
// allows: one HEAD request carrying the scanner's User-Agent (and contact)
// after the handshake, and the response's status line read back, so a site's
// operators find the scan in their logs and know whom to ask.
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
  // A non-empty `user_agent` makes the profile identifying: ALPN offers
  // http/1.1 only (so the request can be HTTP/1.1) and each completed
  // handshake sends one HEAD request with it.
  static tl::expected<ClientProfile, std::string> browser_like(std::string user_agent = {});
  // browser_like, offering TLS 1.3 only (sweep's tls13 variant).
  static tl::expected<ClientProfile, std::string> tls13_only(std::string user_agent = {});
  SSL_CTX* get() const { return ctx_.get(); }
  const std::string& user_agent() const { return user_agent_; }

 private:
  SslCtxPtr ctx_;
  std::string user_agent_;
};

// How long an identifying probe waits for the status line after its request:
// the chain is already in hand, so a site that never answers costs this, not
// the whole handshake timeout.
inline constexpr std::chrono::milliseconds kIdentifyWait{2000};
// "mitmwatch/VERSION (+CONTACT)": the User-Agent a --contact gives.
std::string contact_user_agent(const std::string& contact);

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
  std::optional<Clock::time_point> cut_deadline() const override;
  Observation take() override { return std::move(obs_); }

 private:
  enum class Phase { connecting, handshaking, identifying, done };
  Want fail(ProbeError error, std::string detail);
  Want begin_tls();
  Want step_tls();
  Want step_identify();
  Want finish_identify();
  static void on_info(const SSL* ssl, int where, int ret);

  const ClientProfile& profile_;
  net::Endpoint target_;
  std::optional<net::IpAddress> source_;
  net::Fd fd_;
  SslPtr ssl_;
  Phase phase_ = Phase::connecting;
  Clock::time_point t_start_, t_connected_;
  int alert_received_ = -1;
  std::string request_;   // the HEAD request, while identifying
  bool request_written_ = false;
  std::string response_;  // the response's first bytes, up to its status line
  Clock::time_point identify_until_{};
  Observation obs_;
};

}  // namespace mw::tls
