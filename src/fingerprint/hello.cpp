#include "fingerprint/hello.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace mw::fingerprint {
namespace {

// A cursor over a span that refuses to read past it. Every read says
// whether it could; the parsers stop at the first refusal.
class HelloReader {
 public:
  explicit HelloReader(Bytes b) : b_(b) {}
  size_t left() const { return b_.size() - pos_; }
  bool u8(uint8_t& v) {
    if (left() < 1) return false;
    v = b_[pos_++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (left() < 2) return false;
    v = static_cast<uint16_t>(b_[pos_] << 8 | b_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u24(uint32_t& v) {
    if (left() < 3) return false;
    v = static_cast<uint32_t>(b_[pos_]) << 16 | static_cast<uint32_t>(b_[pos_ + 1]) << 8 | b_[pos_ + 2];
    pos_ += 3;
    return true;
  }
  bool bytes(size_t n, Bytes& out) {
    if (left() < n) return false;
    out = b_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool skip(size_t n) {
    Bytes ignored;
    return bytes(n, ignored);
  }
  // A vector whose length is an N-byte prefix.
  bool prefixed8(Bytes& out) {
    uint8_t n;
    return u8(n) && bytes(n, out);
  }
  bool prefixed16(Bytes& out) {
    uint16_t n;
    return u16(n) && bytes(n, out);
  }

 private:
  Bytes b_;
  size_t pos_ = 0;
};

std::vector<uint16_t> u16_list(Bytes b) {
  std::vector<uint16_t> out;
  out.reserve(b.size() / 2);
  for (size_t i = 0; i + 1 < b.size(); i += 2) out.push_back(static_cast<uint16_t>(b[i] << 8 | b[i + 1]));
  return out;
}

tl::unexpected<std::string> bad(const char* what) { return tl::unexpected(std::string(what)); }

tl::expected<std::vector<Extension>, std::string> read_extensions(HelloReader& r, const char* message) {
  std::vector<Extension> out;
  if (r.left() == 0) return out;  // extensions are optional before TLS 1.3
  Bytes block;
  if (!r.prefixed16(block)) return tl::unexpected(fmt::format("{}: extensions length exceeds the message", message));
  HelloReader e(block);
  while (e.left() > 0) {
    uint16_t type;
    Bytes data;
    if (!e.u16(type) || !e.prefixed16(data))
      return tl::unexpected(fmt::format("{}: extension #{} runs past the extensions block", message, out.size() + 1));
    out.push_back({type, std::vector<uint8_t>(data.begin(), data.end())});
  }
  return out;
}

void decode_client_extension(ClientHello& h, const Extension& x) {
  HelloReader r(x.data);
  Bytes list;
  switch (x.type) {
    case ext::kServerName: {
      if (!r.prefixed16(list)) return;
      HelloReader names(list);
      while (names.left() > 0) {
        uint8_t kind;
        Bytes name;
        if (!names.u8(kind) || !names.prefixed16(name)) return;
        if (kind != 0) continue;
        h.server_names.emplace_back(name.begin(), name.end());
        if (!h.sni) h.sni = h.server_names.back();
      }
      return;
    }
    case ext::kAlpn: {
      if (!r.prefixed16(list)) return;
      HelloReader protocols(list);
      Bytes p;
      while (protocols.prefixed8(p)) h.alpn.emplace_back(p.begin(), p.end());
      return;
    }
    case ext::kSupportedGroups:
      if (r.prefixed16(list)) h.groups = u16_list(list);
      return;
    case ext::kSignatureAlgorithms:
      if (r.prefixed16(list)) h.signature_algorithms = u16_list(list);
      return;
    case ext::kSupportedVersions:
      if (r.prefixed8(list)) h.supported_versions = u16_list(list);
      return;
    case ext::kEcPointFormats:
      if (r.prefixed8(list)) h.point_formats.assign(list.begin(), list.end());
      return;
    default:
      return;
  }
}

// SHA-256("HelloRetryRequest"), RFC 8446 4.1.3.
constexpr uint8_t kHelloRetryRandom[32] = {0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C,
                                           0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB,
                                           0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C};

}  // namespace

bool is_grease(uint16_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 12) == ((v >> 4) & 0xf); }

tl::expected<ClientHello, std::string> parse_client_hello(Bytes body, uint16_t record_version) {
  ClientHello h;
  h.record_version = record_version;
  HelloReader r(body);
  Bytes random, session, ciphers, compression;
  if (!r.u16(h.version)) return bad("ClientHello: shorter than its version field");
  if (!r.bytes(32, random)) return bad("ClientHello: shorter than its random");
  if (!r.prefixed8(session)) return bad("ClientHello: session_id length exceeds the message");
  if (session.size() > 32) return bad("ClientHello: session_id longer than 32 bytes");
  if (!r.prefixed16(ciphers)) return bad("ClientHello: cipher_suites length exceeds the message");
  if (ciphers.size() % 2) return bad("ClientHello: cipher_suites length is odd");
  if (!r.prefixed8(compression)) return bad("ClientHello: compression_methods length exceeds the message");
  h.session_id.assign(session.begin(), session.end());
  h.ciphers = u16_list(ciphers);
  h.compression.assign(compression.begin(), compression.end());
  auto extensions = read_extensions(r, "ClientHello");
  if (!extensions) return tl::unexpected(extensions.error());
  h.extensions = std::move(*extensions);
  for (const auto& x : h.extensions) decode_client_extension(h, x);
  return h;
}

tl::expected<ServerHello, std::string> parse_server_hello(Bytes body, uint16_t record_version) {
  ServerHello h;
  h.record_version = record_version;
  HelloReader r(body);
  Bytes random, session;
  if (!r.u16(h.version)) return bad("ServerHello: shorter than its version field");
  if (!r.bytes(32, random)) return bad("ServerHello: shorter than its random");
  h.hello_retry_request = std::equal(random.begin(), random.end(), std::begin(kHelloRetryRandom));
  if (!r.prefixed8(session)) return bad("ServerHello: session_id length exceeds the message");
  if (!r.u16(h.cipher)) return bad("ServerHello: no cipher_suite");
  if (!r.u8(h.compression)) return bad("ServerHello: no compression_method");
  auto extensions = read_extensions(r, "ServerHello");
  if (!extensions) return tl::unexpected(extensions.error());
  h.extensions = std::move(*extensions);
  for (const auto& x : h.extensions) {
    HelloReader e(x.data);
    if (x.type == ext::kSupportedVersions) {
      uint16_t v;
      if (e.u16(v)) h.selected_version = v;
    } else if (x.type == ext::kAlpn) {
      Bytes list, p;
      if (e.prefixed16(list) && HelloReader(list).prefixed8(p)) h.alpn = std::string(p.begin(), p.end());
    }
  }
  return h;
}

tl::expected<std::vector<std::vector<uint8_t>>, std::string> parse_certificate_list(Bytes body) {
  HelloReader r(body);
  uint32_t total;
  Bytes list;
  if (!r.u24(total) || !r.bytes(total, list)) return bad("Certificate: certificate_list length exceeds the message");
  std::vector<std::vector<uint8_t>> out;
  HelloReader c(list);
  while (c.left() > 0) {
    uint32_t n;
    Bytes der;
    if (!c.u24(n) || !c.bytes(n, der))
      return tl::unexpected(fmt::format("Certificate: entry #{} runs past the list", out.size() + 1));
    out.emplace_back(der.begin(), der.end());
  }
  return out;
}

}  // namespace mw::fingerprint
