// One probe of a remote server as a non-blocking state machine: what the
// scan loop drives. Two kinds exist: tls::Handshake (OpenSSL completes the
// handshake) and hello::RawHelloProbe (a hand-built ClientHello, the
// server's flight read in clear). The loop waits on fd() for want(), or
// until wake_at() for a probe that paces what it sends.
#pragma once

#include "tls/observation.hpp"

#include <chrono>

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
  // Moves the observation out; valid once want() is done.
  virtual Observation take() = 0;
};

}  // namespace mw::tls
