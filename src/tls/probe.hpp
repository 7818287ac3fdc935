// One probe of a remote server as a non-blocking state machine: what the
// scan loop drives. Two kinds exist: tls::Handshake (OpenSSL completes the
// handshake) and hello::RawHelloProbe (a hand-built ClientHello, the
// server's flight read in clear). The loop waits on fd() for want(), or
// until wake_at() for a probe that paces what it sends.
#pragma once

#include "net/address.hpp"
#include "net/fd.hpp"
#include "tls/observation.hpp"

#include <tl/expected.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace mw::tls {

class Probe {
 public:
  enum class Want { read, write, wait, done };
  using Clock = std::chrono::steady_clock;

  virtual ~Probe() = default;
  virtual Want start() = 0;
  // The socket is ready, or (after Want::wait) the wake-up time came.
  virtual Want on_ready() = 0;
  // The deadline passed: records connect-timeout or handshake-timeout.
  virtual void time_out() = 0;
  virtual int fd() const = 0;
  virtual bool connecting() const = 0;
  // With Want::wait: when to call on_ready() again.
  virtual Clock::time_point wake_at() const { return Clock::now(); }
  // An earlier deadline than the loop's own, when the probe's current phase
  // has one (an identifying request after the handshake); checked after each step.
  virtual std::optional<Clock::time_point> cut_deadline() const { return std::nullopt; }
  // Moves the observation out; valid once want() is done.
  virtual Observation take() = 0;
};

// How every probe begins: a non-blocking TCP socket with Nagle off (so each
// send() leaves as its own segment, which the raw probe's segment plans rely
// on), bound to `source` if given, its connect begun.
struct ConnectStart {
  net::Fd fd;
  bool connected = false;  // connect() finished at once (loopback can)
};
struct ConnectFailure {
  ProbeError error;
  std::string detail;
};
tl::expected<ConnectStart, ConnectFailure> start_connect(const net::Endpoint& target,
                                                         const std::optional<net::IpAddress>& source);
// A connect errno (from connect() or SO_ERROR) as the record's error kind.
ProbeError classify_connect_errno(int err);

}  // namespace mw::tls
