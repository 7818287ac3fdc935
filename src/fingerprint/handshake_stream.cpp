#include "fingerprint/handshake_stream.hpp"

#include <fmt/format.h>

namespace mw::fingerprint {
namespace {

constexpr uint8_t kChangeCipherSpec = 20, kAlert = 21, kHandshake = 22, kApplicationData = 23;
// RFC 8446 5.2: a ciphertext record is at most 2^14 + 256 bytes; TLS 1.2
// allowed 2^14 + 2048. Anything longer is not TLS.
constexpr size_t kMaxRecord = (1u << 14) + 2048;

}  // namespace

const char* to_string(HandshakeStream::State s) {
  switch (s) {
    case HandshakeStream::State::reading: return "reading";
    case HandshakeStream::State::encrypted: return "encrypted";
    case HandshakeStream::State::alert: return "alert";
    case HandshakeStream::State::not_tls: return "not-tls";
    case HandshakeStream::State::malformed: return "malformed";
  }
  return "?";
}

void HandshakeStream::fail(State s, std::string why) {
  state_ = s;
  reason_ = std::move(why);
  records_.clear();
  records_.shrink_to_fit();
  handshake_.clear();
  handshake_.shrink_to_fit();
}

void HandshakeStream::feed(Bytes data) {
  if (state_ != State::reading || data.empty()) return;
  records_.insert(records_.end(), data.begin(), data.end());
  take_records();
}

// The first TLS record may follow a proxy's preamble: look for a handshake
// record header whose message is a ClientHello or ServerHello.
bool HandshakeStream::hello_at(size_t i) const {
  return records_.size() >= i + 6 && records_[i] == kHandshake && records_[i + 1] == 3 && records_[i + 2] <= 4 &&
         (records_[i + 5] == 1 || records_[i + 5] == 2);
}

bool HandshakeStream::skip_to_first_record() {
  auto looks_like_hello = [&](size_t i) { return hello_at(i); };
  size_t i = 0;
  for (; i + 6 <= records_.size(); ++i)
    if (looks_like_hello(i)) break;
  if (i + 6 > records_.size()) {
    // Keep the last 5 bytes: a header may straddle this feed and the next.
    size_t keep = std::min<size_t>(records_.size(), 5);
    i = records_.size() - keep;
  }
  preamble_ += i;
  records_.erase(records_.begin(), records_.begin() + static_cast<std::ptrdiff_t>(i));
  if (preamble_ > kMaxPreamble) {
    fail(State::not_tls, fmt::format("no TLS record in the first {} bytes", kMaxPreamble));
    return false;
  }
  return records_.size() >= 6 && looks_like_hello(0);
}

void HandshakeStream::take_records() {
  if (!allow_preamble_ && first_record_ && records_.size() >= 2 && !((records_[0] == kHandshake || records_[0] == kAlert) && records_[1] == 3)) {
    fail(State::not_tls, fmt::format("the first bytes are not a TLS record (0x{:02x} 0x{:02x})", records_[0], records_[1]));
    return;
  }
  // At the start a handshake record is taken as the first record; once a
  // preamble was skipped, only a ClientHello or ServerHello ends it, whatever
  // the bytes' split into feeds (the fuzzer found the difference).
  bool at_record = records_.size() >= 6 && records_[0] == kHandshake && records_[1] == 3 && (preamble_ == 0 || hello_at(0));
  if (allow_preamble_ && first_record_ && records_.size() >= 6 && !at_record && !skip_to_first_record()) return;
  size_t pos = 0;
  while (state_ == State::reading && records_.size() - pos >= 5) {
    const uint8_t* h = records_.data() + pos;
    uint8_t type = h[0];
    uint16_t version = static_cast<uint16_t>(h[1] << 8 | h[2]);
    size_t length = static_cast<size_t>(h[3] << 8 | h[4]);
    if (allow_preamble_ && first_record_ && (type != kHandshake || h[1] != 3)) break;  // a preamble: wait for more (above)
    if (type < kChangeCipherSpec || type > kApplicationData || h[1] != 3) {
      fail(State::malformed, fmt::format("record of type {} version {:04x}: not TLS", type, version));
      return;
    }
    if (length > kMaxRecord) {
      fail(State::malformed, fmt::format("record length {} exceeds TLS's maximum", length));
      return;
    }
    if (records_.size() - pos < 5 + length) break;  // the rest comes later
    first_record_ = false;
    Bytes payload{h + 5, length};
    pos += 5 + length;
    switch (type) {
      case kHandshake:
        if (handshake_.empty()) message_record_version_ = version;
        if (handshake_.size() + payload.size() > max_message_ + 4) {
          fail(State::malformed, fmt::format("handshake message over {} bytes", max_message_));
          return;
        }
        handshake_.insert(handshake_.end(), payload.begin(), payload.end());
        take_messages(version);
        break;
      case kAlert:
        if (payload.size() >= 2) alert_ = std::pair{payload[0], payload[1]};
        state_ = State::alert;
        break;
      default:  // ChangeCipherSpec, application data: what follows is encrypted
        state_ = State::encrypted;
        break;
    }
  }
  records_.erase(records_.begin(), records_.begin() + static_cast<std::ptrdiff_t>(std::min(pos, records_.size())));
  if (state_ != State::reading) {
    records_.clear();
    records_.shrink_to_fit();
  }
}

void HandshakeStream::take_messages(uint16_t record_version) {
  size_t pos = 0;
  while (handshake_.size() - pos >= 4) {
    const uint8_t* h = handshake_.data() + pos;
    size_t length = static_cast<size_t>(h[1]) << 16 | static_cast<size_t>(h[2]) << 8 | h[3];
    if (length > max_message_) {
      fail(State::malformed, fmt::format("handshake message type {} claims {} bytes, over the {} cap", h[0], length,
                                         max_message_));
      return;
    }
    if (handshake_.size() - pos < 4 + length) break;
    ready_.push_back({h[0], message_record_version_, std::vector<uint8_t>(h + 4, h + 4 + length)});
    pos += 4 + length;
    message_record_version_ = record_version;
  }
  handshake_.erase(handshake_.begin(), handshake_.begin() + static_cast<std::ptrdiff_t>(pos));
}

std::optional<HandshakeMessage> HandshakeStream::next() {
  if (ready_.empty()) return std::nullopt;
  auto m = std::move(ready_.front());
  ready_.pop_front();
  return m;
}

}  // namespace mw::fingerprint
