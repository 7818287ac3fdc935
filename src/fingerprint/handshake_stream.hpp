// Handshake messages out of one direction of a TLS connection's byte stream:
// records are unwrapped, and a message split over several records (or, by
// the caller's reassembly, several TCP segments) is put back together.
// Bounded: a record longer than TLS allows or a message over the cap ends the
// stream's reading with a reason, never an allocation to match a lying length.
#pragma once

#include "fingerprint/hello.hpp"

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace mw::fingerprint {

namespace handshake_type {
inline constexpr uint8_t kClientHello = 1, kServerHello = 2, kCertificate = 11, kServerHelloDone = 14;
}

struct HandshakeMessage {
  uint8_t type = 0;
  uint16_t record_version = 0;  // of the record the message began in
  std::vector<uint8_t> body;
};

class HandshakeStream {
 public:
  enum class State {
    reading,    // only cleartext handshake records so far
    encrypted,  // ChangeCipherSpec or application data: nothing more in clear
    alert,      // a cleartext alert
    not_tls,    // the first bytes are not a TLS record
    malformed,  // a record or message length TLS does not allow, or over the cap
  };

  // `allow_preamble` false: the stream must start with a TLS record (a live
  // peer's answer), else it is not TLS; true: a proxy preamble is skipped.
  explicit HandshakeStream(size_t max_message = 256 * 1024, bool allow_preamble = true)
      : max_message_(max_message), allow_preamble_(allow_preamble) {}

  // Bytes of the stream, in order. Ignored once the state is not `reading`.
  void feed(Bytes data);
  // Complete messages, oldest first.
  std::optional<HandshakeMessage> next();
  State state() const { return state_; }
  const std::string& reason() const { return reason_; }
  // An alert seen in clear: (level, description).
  std::optional<std::pair<uint8_t, uint8_t>> alert() const { return alert_; }
  // Bytes skipped before the first TLS record: a proxy's preamble (SOCKS,
  // HTTP CONNECT) that a connection may carry before its TLS starts.
  size_t preamble() const { return preamble_; }
  static constexpr size_t kMaxPreamble = 16 * 1024;

 private:
  void fail(State s, std::string why);
  void take_records();
  void take_messages(uint16_t record_version);
  bool skip_to_first_record();
  bool hello_at(size_t i) const;  // a ClientHello or ServerHello record header at records_[i]

  size_t max_message_;
  bool allow_preamble_;
  State state_ = State::reading;
  std::string reason_;
  std::optional<std::pair<uint8_t, uint8_t>> alert_;
  std::vector<uint8_t> records_;    // unparsed record bytes
  std::vector<uint8_t> handshake_;  // handshake bytes not yet a whole message
  uint16_t message_record_version_ = 0;
  std::deque<HandshakeMessage> ready_;
  bool first_record_ = true;
  size_t preamble_ = 0;
};

const char* to_string(HandshakeStream::State s);

}  // namespace mw::fingerprint
