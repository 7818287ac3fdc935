// QUIC Initial packets, read the way an on-path observer can: the keys of an
// Initial come from its Destination Connection ID and a salt the version
// publishes (RFC 9001 section 5; RFC 9369 for version 2), so anyone who sees a
// client's first flight can remove its protection and read the ClientHello it
// carries in CRYPTO frames.
//
// Written here because no Debian library does it: OpenSSL 3.0 has no QUIC,
// and ngtcp2/picoquic would bring a whole endpoint for five lines of key
// schedule. The crypto (HKDF over HMAC-SHA256, AES-128-ECB for header
// protection, AES-128-GCM) is libcrypto's. Parsers are bounded like the TLS
// ones: lengths are checked, nothing is trusted, nothing throws.
#pragma once

#include "fingerprint/hello.hpp"

#include <tl/expected.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mw::quic {

using Bytes = std::span<const uint8_t>;

inline constexpr uint32_t kVersion1 = 0x00000001;
inline constexpr uint32_t kVersion2 = 0x6b3343cf;  // RFC 9369

// A variable-length integer (RFC 9000 section 16) at `at`; `at` moves past it.
std::optional<uint64_t> read_varint(Bytes data, size_t& at);
void append_varint(std::vector<uint8_t>& out, uint64_t value);

// The client's Initial keys for a version and Destination Connection ID.
struct InitialKeys {
  std::array<uint8_t, 16> key{}, hp{};
  std::array<uint8_t, 12> iv{};
};
// nullopt for a version whose Initial salt we do not know.
std::optional<InitialKeys> client_initial_keys(uint32_t version, Bytes dcid);

// One long-header packet of a datagram, its protection removed when it is a
// client Initial of a known version.
struct LongPacket {
  uint32_t version = 0;
  bool initial = false;
  std::vector<uint8_t> dcid, scid, token;
  uint64_t packet_number = 0;
  std::vector<uint8_t> payload;  // the frames, decrypted (Initials only)
  bool decrypted = false;
  std::string problem;           // why it could not be decrypted, for people
};

// The long-header packets a datagram coalesces (RFC 9000 section 12.2), in
// order, up to the first short-header packet or the end. An error when the
// datagram is not QUIC (short header first, version 0, bad lengths).
tl::expected<std::vector<LongPacket>, std::string> parse_datagram(Bytes datagram);

// The CRYPTO frames of a decrypted Initial payload, with PADDING, PING, ACK
// and CONNECTION_CLOSE stepped over; any other frame type is an error (RFC
// 9000 section 12.4 allows no other in an Initial).
struct CryptoFrame {
  uint64_t offset = 0;
  std::vector<uint8_t> data;
};
tl::expected<std::vector<CryptoFrame>, std::string> crypto_frames(Bytes payload);

// The client's CRYPTO stream put back together from frames in any order,
// bounded; the ClientHello once its bytes from offset 0 are all there.
class CryptoStream {
 public:
  explicit CryptoStream(size_t max_bytes = 64 * 1024) : max_bytes_(max_bytes) {}
  // False when the frame lies beyond the bound (the stream is then given up).
  bool add(const CryptoFrame& frame);
  // The first handshake message's type and body when whole.
  std::optional<std::pair<uint8_t, std::vector<uint8_t>>> first_message() const;
  size_t contiguous() const;  // bytes from offset 0 with no gap
  size_t frames() const { return frames_; }
  bool overflowed() const { return overflowed_; }

 private:
  std::map<uint64_t, std::vector<uint8_t>> pieces_;  // by offset
  size_t max_bytes_, frames_ = 0;
  bool overflowed_ = false;
};

// One client's first flight, datagram by datagram: its Initials decrypted,
// their CRYPTO frames reassembled, and the ClientHello parsed once whole.
// Chrome spreads a post-quantum ClientHello over two datagrams and shuffles
// its CRYPTO frames among PING and PADDING; this takes them in any order.
class InitialReader {
 public:
  // One datagram from the client. An error for a datagram that is not QUIC;
  // Initials that cannot be decrypted are counted in problems() and skipped.
  tl::expected<void, std::string> add(Bytes datagram);
  bool done() const { return hello_.has_value() || !error_.empty(); }
  const std::optional<fingerprint::ClientHello>& hello() const { return hello_; }
  // Why the ClientHello could not be read (not a ClientHello, a bad one).
  const std::string& error() const { return error_; }
  uint32_t version() const { return version_; }
  const std::vector<uint8_t>& dcid() const { return dcid_; }
  size_t initials() const { return initials_; }
  size_t crypto_frames() const { return crypto_.frames(); }
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  CryptoStream crypto_;
  std::optional<fingerprint::ClientHello> hello_;
  std::string error_;
  uint32_t version_ = 0;
  std::vector<uint8_t> dcid_;
  size_t initials_ = 0;
  std::vector<std::string> problems_;
};

// Protects a client Initial (for tests, fixtures and probes): `payload` are
// the frames, padded by the caller as it likes. The inverse of parse_datagram.
std::vector<uint8_t> protect_client_initial(uint32_t version, Bytes dcid, Bytes scid, uint64_t packet_number,
                                            size_t packet_number_length, Bytes payload, Bytes token = {});

}  // namespace mw::quic
