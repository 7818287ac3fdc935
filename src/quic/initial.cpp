#include "quic/initial.hpp"

#include "fingerprint/handshake_stream.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>
#include <memory>

namespace mw::quic {
namespace {

constexpr size_t kTagBytes = 16, kSampleBytes = 16, kMaxConnectionId = 20;

struct VersionConstants {
  std::array<uint8_t, 20> salt;
  const char *key_label, *iv_label, *hp_label;
  uint8_t initial_type;  // long-header type bits of an Initial
  uint8_t retry_type;
};

std::optional<VersionConstants> constants(uint32_t version) {
  if (version == kVersion1)  // RFC 9001 section 5.2
    return VersionConstants{{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                             0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a},
                            "quic key", "quic iv", "quic hp", 0, 3};
  if (version == kVersion2)  // RFC 9369 sections 3.2 and 3.3
    return VersionConstants{{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
                             0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9},
                            "quicv2 key", "quicv2 iv", "quicv2 hp", 1, 0};
  return std::nullopt;
}

std::array<uint8_t, 32> hmac_sha256(Bytes key, Bytes data) {
  std::array<uint8_t, 32> out{};
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(), &n);
  return out;
}

// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context, for
// outputs of at most one SHA-256 block: all QUIC Initial keys are.
template <size_t N>
std::array<uint8_t, N> expand_label(const std::array<uint8_t, 32>& secret, const std::string& label) {
  static_assert(N <= 32);
  std::string full = "tls13 " + label;
  std::vector<uint8_t> info{0, static_cast<uint8_t>(N), static_cast<uint8_t>(full.size())};
  info.insert(info.end(), full.begin(), full.end());
  info.push_back(0);  // context length
  info.push_back(1);  // HKDF-Expand's block counter
  auto t = hmac_sha256(secret, info);
  std::array<uint8_t, N> out{};
  std::memcpy(out.data(), t.data(), N);
  return out;
}

struct CipherCtx {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx{EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free};
};

std::array<uint8_t, 16> header_mask(const std::array<uint8_t, 16>& hp, const uint8_t* sample) {
  std::array<uint8_t, 16> mask{};
  CipherCtx c;
  int n = 0;
  if (c.ctx && EVP_EncryptInit_ex(c.ctx.get(), EVP_aes_128_ecb(), nullptr, hp.data(), nullptr) == 1) {
    EVP_CIPHER_CTX_set_padding(c.ctx.get(), 0);
    EVP_EncryptUpdate(c.ctx.get(), mask.data(), &n, sample, static_cast<int>(kSampleBytes));
  }
  return mask;
}

std::array<uint8_t, 12> nonce_of(const InitialKeys& k, uint64_t packet_number) {
  auto nonce = k.iv;
  for (int i = 0; i < 8; ++i) nonce[11 - i] ^= static_cast<uint8_t>(packet_number >> (8 * i));
  return nonce;
}

// AES-128-GCM: false when the tag does not verify.
bool open_payload(const InitialKeys& k, uint64_t pn, Bytes aad, Bytes sealed, std::vector<uint8_t>& out) {
  if (sealed.size() < kTagBytes) return false;
  size_t n = sealed.size() - kTagBytes;
  auto nonce = nonce_of(k, pn);
  CipherCtx c;
  int len = 0;
  out.resize(n);
  if (!c.ctx || EVP_DecryptInit_ex(c.ctx.get(), EVP_aes_128_gcm(), nullptr, k.key.data(), nonce.data()) != 1 ||
      EVP_DecryptUpdate(c.ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(c.ctx.get(), out.data(), &len, sealed.data(), static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes),
                          const_cast<uint8_t*>(sealed.data() + n)) != 1)
    return false;
  return EVP_DecryptFinal_ex(c.ctx.get(), out.data() + len, &len) == 1;
}

std::vector<uint8_t> seal_payload(const InitialKeys& k, uint64_t pn, Bytes aad, Bytes plain) {
  auto nonce = nonce_of(k, pn);
  CipherCtx c;
  int len = 0;
  std::vector<uint8_t> out(plain.size() + kTagBytes);
  if (!c.ctx || EVP_EncryptInit_ex(c.ctx.get(), EVP_aes_128_gcm(), nullptr, k.key.data(), nonce.data()) != 1 ||
      EVP_EncryptUpdate(c.ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(c.ctx.get(), out.data(), &len, plain.data(), static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(c.ctx.get(), out.data() + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes), out.data() + plain.size()) != 1)
    return {};
  return out;
}

// Removes header and packet protection from one Initial, `packet` being its
// bytes and `pn_offset` where its packet number starts.
void unprotect(LongPacket& p, Bytes packet, size_t pn_offset) {
  auto keys = client_initial_keys(p.version, p.dcid);
  if (!keys) {
    p.problem = fmt::format("version 0x{:08x}: no Initial salt known", p.version);
    return;
  }
  if (pn_offset + 4 + kSampleBytes > packet.size()) {
    p.problem = "too short to sample for header protection";
    return;
  }
  auto mask = header_mask(keys->hp, packet.data() + pn_offset + 4);
  std::vector<uint8_t> header(packet.begin(), packet.begin() + static_cast<ptrdiff_t>(pn_offset + 4));
  header[0] ^= mask[0] & 0x0f;
  size_t pn_length = (header[0] & 0x03) + 1;
  header.resize(pn_offset + pn_length);
  uint64_t pn = 0;
  for (size_t i = 0; i < pn_length; ++i) {
    header[pn_offset + i] ^= mask[1 + i];
    pn = pn << 8 | header[pn_offset + i];
  }
  p.packet_number = pn;
  if (!open_payload(*keys, pn, header, packet.subspan(pn_offset + pn_length), p.payload)) {
    p.payload.clear();
    p.problem = "the Initial does not decrypt with its Destination Connection ID's keys";
    return;
  }
  p.decrypted = true;
}

}  // namespace

std::optional<uint64_t> read_varint(Bytes data, size_t& at) {
  if (at >= data.size()) return std::nullopt;
  size_t n = size_t{1} << (data[at] >> 6);
  if (data.size() - at < n) return std::nullopt;
  uint64_t v = data[at] & 0x3f;
  for (size_t i = 1; i < n; ++i) v = v << 8 | data[at + i];
  at += n;
  return v;
}

void append_varint(std::vector<uint8_t>& out, uint64_t v) {
  if (v < 64) {
    out.push_back(static_cast<uint8_t>(v));
  } else if (v < 16384) {
    out.push_back(static_cast<uint8_t>(0x40 | v >> 8));
    out.push_back(static_cast<uint8_t>(v));
  } else if (v < (1ull << 30)) {
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<uint8_t>((i == 3 ? 0x80 : 0) | (v >> (8 * i) & 0xff)));
  } else {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>((i == 7 ? 0xc0 : 0) | (v >> (8 * i) & 0xff)));
  }
}

std::optional<InitialKeys> client_initial_keys(uint32_t version, Bytes dcid) {
  auto c = constants(version);
  if (!c) return std::nullopt;
  auto initial_secret = hmac_sha256(c->salt, dcid);  // HKDF-Extract(salt, DCID)
  auto client = expand_label<32>(initial_secret, "client in");
  InitialKeys k;
  k.key = expand_label<16>(client, c->key_label);
  k.iv = expand_label<12>(client, c->iv_label);
  k.hp = expand_label<16>(client, c->hp_label);
  return k;
}

tl::expected<std::vector<LongPacket>, std::string> parse_datagram(Bytes d) {
  std::vector<LongPacket> out;
  size_t at = 0;
  if (d.empty() || !(d[0] & 0x80)) return tl::unexpected(std::string("not a QUIC long-header packet"));
  while (at < d.size() && (d[at] & 0x80)) {
    size_t start = at;
    auto where = [&](const std::string& what) { return fmt::format("packet {} at byte {}: {}", out.size() + 1, start, what); };
    if (d.size() - at < 7) return tl::unexpected(where("a long header cut short"));
    uint8_t first = d[at];
    LongPacket p;
    p.version = static_cast<uint32_t>(d[at + 1]) << 24 | static_cast<uint32_t>(d[at + 2]) << 16 |
                static_cast<uint32_t>(d[at + 3]) << 8 | d[at + 4];
    at += 5;
    if (p.version == 0) {  // version negotiation: the rest of the datagram
      if (!out.empty()) return tl::unexpected(where("version negotiation after another packet"));
      out.push_back(std::move(p));
      return out;
    }
    for (auto* cid : {&p.dcid, &p.scid}) {
      if (at >= d.size()) return tl::unexpected(where("a connection ID cut short"));
      size_t n = d[at++];
      if (n > kMaxConnectionId) return tl::unexpected(where(fmt::format("a connection ID of {} bytes (at most 20)", n)));
      if (d.size() - at < n) return tl::unexpected(where("a connection ID cut short"));
      cid->assign(d.begin() + static_cast<ptrdiff_t>(at), d.begin() + static_cast<ptrdiff_t>(at + n));
      at += n;
    }
    auto c = constants(p.version);
    uint8_t type = (first >> 4) & 0x03;
    if (c && type == c->retry_type) {  // Retry: no Length, the rest of the datagram
      out.push_back(std::move(p));
      return out;
    }
    p.initial = c && type == c->initial_type;
    if (p.initial) {
      auto token_length = read_varint(d, at);
      if (!token_length || d.size() - at < *token_length) return tl::unexpected(where("a token cut short"));
      p.token.assign(d.begin() + static_cast<ptrdiff_t>(at), d.begin() + static_cast<ptrdiff_t>(at + *token_length));
      at += static_cast<size_t>(*token_length);
    }
    auto length = read_varint(d, at);
    if (!length) return tl::unexpected(where("its Length cut short"));
    if (*length > d.size() - at)
      return tl::unexpected(where(fmt::format("its Length says {} bytes, {} are left", *length, d.size() - at)));
    size_t end = at + static_cast<size_t>(*length);
    if (p.initial) unprotect(p, d.subspan(start, end - start), at - start);
    else if (!c) p.problem = fmt::format("version 0x{:08x}: not one we read", p.version);
    out.push_back(std::move(p));
    at = end;
  }
  return out;
}

tl::expected<std::vector<CryptoFrame>, std::string> crypto_frames(Bytes payload) {
  std::vector<CryptoFrame> out;
  size_t at = 0;
  auto need = [&](std::optional<uint64_t> v, const char* what) -> tl::expected<uint64_t, std::string> {
    if (!v) return tl::unexpected(fmt::format("frame at byte {}: {} cut short", at, what));
    return *v;
  };
  while (at < payload.size()) {
    size_t frame_at = at;
    auto type = read_varint(payload, at);
    if (!type) return tl::unexpected(fmt::format("frame at byte {}: its type cut short", frame_at));
    switch (*type) {
      case 0x00:  // PADDING
        while (at < payload.size() && payload[at] == 0) ++at;
        break;
      case 0x01:  // PING
        break;
      case 0x02:
      case 0x03: {  // ACK
        for (const char* f : {"largest acknowledged", "ack delay"})
          if (auto v = need(read_varint(payload, at), f); !v) return tl::unexpected(v.error());
        auto ranges = need(read_varint(payload, at), "ack range count");
        if (!ranges) return tl::unexpected(ranges.error());
        if (auto v = need(read_varint(payload, at), "first ack range"); !v) return tl::unexpected(v.error());
        if (*ranges > payload.size()) return tl::unexpected(fmt::format("frame at byte {}: {} ack ranges", frame_at, *ranges));
        for (uint64_t i = 0; i < 2 * *ranges + (*type == 0x03 ? 3 : 0); ++i)
          if (auto v = need(read_varint(payload, at), "an ack range"); !v) return tl::unexpected(v.error());
        break;
      }
      case 0x06: {  // CRYPTO
        auto offset = need(read_varint(payload, at), "CRYPTO offset");
        if (!offset) return tl::unexpected(offset.error());
        auto length = need(read_varint(payload, at), "CRYPTO length");
        if (!length) return tl::unexpected(length.error());
        if (*length > payload.size() - at)
          return tl::unexpected(fmt::format("frame at byte {}: CRYPTO length {} with {} bytes left", frame_at, *length,
                                            payload.size() - at));
        if (*offset > (1ull << 62) - *length)
          return tl::unexpected(fmt::format("frame at byte {}: CRYPTO data past 2^62", frame_at));
        CryptoFrame f;
        f.offset = *offset;
        f.data.assign(payload.begin() + static_cast<ptrdiff_t>(at), payload.begin() + static_cast<ptrdiff_t>(at + *length));
        at += static_cast<size_t>(*length);
        out.push_back(std::move(f));
        break;
      }
      case 0x1c:
      case 0x1d: {  // CONNECTION_CLOSE
        if (auto v = need(read_varint(payload, at), "error code"); !v) return tl::unexpected(v.error());
        if (*type == 0x1c)
          if (auto v = need(read_varint(payload, at), "frame type"); !v) return tl::unexpected(v.error());
        auto reason = need(read_varint(payload, at), "reason length");
        if (!reason) return tl::unexpected(reason.error());
        if (*reason > payload.size() - at) return tl::unexpected(fmt::format("frame at byte {}: reason cut short", frame_at));
        at += static_cast<size_t>(*reason);
        break;
      }
      default:
        return tl::unexpected(fmt::format("frame at byte {}: type 0x{:x} is not allowed in an Initial", frame_at, *type));
    }
  }
  return out;
}

bool CryptoStream::add(const CryptoFrame& f) {
  ++frames_;
  if (overflowed_) return false;
  if (f.data.empty()) return true;  // a CRYPTO frame of no bytes adds nothing
  if (f.offset > max_bytes_ || f.data.size() > max_bytes_ - f.offset) {
    overflowed_ = true;
    return false;
  }
  // A frame that repeats or overlaps others: the bytes already held stay.
  pieces_.emplace(f.offset, f.data);
  return true;
}

size_t CryptoStream::contiguous() const {
  size_t end = 0;
  for (const auto& [offset, data] : pieces_) {
    if (offset > end) break;
    end = std::max(end, static_cast<size_t>(offset) + data.size());
  }
  return end;
}

std::optional<std::pair<uint8_t, std::vector<uint8_t>>> CryptoStream::first_message() const {
  size_t have = contiguous();
  if (have < 4) return std::nullopt;
  std::vector<uint8_t> bytes(have);
  for (const auto& [offset, data] : pieces_) {
    if (offset >= have) break;
    size_t n = std::min(data.size(), have - static_cast<size_t>(offset));
    std::memcpy(bytes.data() + offset, data.data(), n);
  }
  size_t length = static_cast<size_t>(bytes[1]) << 16 | static_cast<size_t>(bytes[2]) << 8 | bytes[3];
  if (have < 4 + length) return std::nullopt;
  return std::make_pair(bytes[0], std::vector<uint8_t>(bytes.begin() + 4, bytes.begin() + 4 + static_cast<ptrdiff_t>(length)));
}

tl::expected<void, std::string> InitialReader::add(Bytes datagram) {
  auto packets = parse_datagram(datagram);
  if (!packets) return tl::unexpected(packets.error());
  for (auto& p : *packets) {
    if (!p.initial) continue;
    if (!p.decrypted) {
      problems_.push_back(p.problem);
      continue;
    }
    ++initials_;
    if (version_ == 0) {
      version_ = p.version;
      dcid_ = p.dcid;
    }
    auto frames = quic::crypto_frames(p.payload);
    if (!frames) {
      problems_.push_back(frames.error());
      continue;
    }
    for (const auto& f : *frames)
      if (!crypto_.add(f) && error_.empty()) error_ = "the CRYPTO data runs past 64 KiB before a whole ClientHello";
  }
  if (hello_ || !error_.empty()) return {};
  if (auto m = crypto_.first_message()) {
    if (m->first != fingerprint::handshake_type::kClientHello) {
      error_ = fmt::format("the first handshake message is of type {}, not a ClientHello", m->first);
    } else if (auto h = fingerprint::parse_client_hello(m->second, 0); h) {
      hello_ = std::move(*h);
    } else {
      error_ = h.error();
    }
  }
  return {};
}

std::vector<uint8_t> protect_client_initial(uint32_t version, Bytes dcid, Bytes scid, uint64_t pn,
                                            size_t pn_length, Bytes payload, Bytes token) {
  auto c = constants(version);
  auto keys = client_initial_keys(version, dcid);
  if (!c || !keys || pn_length < 1 || pn_length > 4) return {};
  std::vector<uint8_t> p{static_cast<uint8_t>(0xc0 | c->initial_type << 4 | (pn_length - 1))};
  for (int i = 3; i >= 0; --i) p.push_back(static_cast<uint8_t>(version >> (8 * i)));
  p.push_back(static_cast<uint8_t>(dcid.size()));
  p.insert(p.end(), dcid.begin(), dcid.end());
  p.push_back(static_cast<uint8_t>(scid.size()));
  p.insert(p.end(), scid.begin(), scid.end());
  append_varint(p, token.size());
  p.insert(p.end(), token.begin(), token.end());
  append_varint(p, pn_length + payload.size() + kTagBytes);
  size_t pn_offset = p.size();
  for (size_t i = 0; i < pn_length; ++i) p.push_back(static_cast<uint8_t>(pn >> (8 * (pn_length - 1 - i))));
  auto sealed = seal_payload(*keys, pn, p, payload);
  p.insert(p.end(), sealed.begin(), sealed.end());
  if (p.size() < pn_offset + 4 + kSampleBytes) return {};
  auto mask = header_mask(keys->hp, p.data() + pn_offset + 4);
  p[0] ^= mask[0] & 0x0f;
  for (size_t i = 0; i < pn_length; ++i) p[pn_offset + i] ^= mask[1 + i];
  return p;
}

}  // namespace mw::quic
