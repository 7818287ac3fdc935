#include "fingerprint/fingerprints.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace mw::fingerprint {
namespace {

// Digests fetched once: OpenSSL 3's implicit fetch (EVP_sha256() passed to
// EVP_Digest) looks the algorithm up on every call, and that lookup cost more
// than the rest of reading a capture (measured: 45 us per connection).
const EVP_MD* fetched(const char* name) {
  EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
  if (!md) std::abort();  // the default provider always has these
  return md;
}
const EVP_MD* md5() {
  static const EVP_MD* md = fetched("MD5");
  return md;
}
const EVP_MD* sha1() {
  static const EVP_MD* md = fetched("SHA1");
  return md;
}
const EVP_MD* sha256() {
  static const EVP_MD* md = fetched("SHA256");
  return md;
}

constexpr char kHexDigits[] = "0123456789abcdef";

std::string digest_hex(const EVP_MD* md, const void* data, size_t size, size_t hex_chars) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data, size, out, &n, md, nullptr);
  std::string hex(std::min<size_t>(hex_chars, 2 * n), '0');
  for (size_t i = 0; i < hex.size(); ++i) hex[i] = kHexDigits[(out[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
  return hex;
}

std::string md5_hex(const std::string& s) { return digest_hex(md5(), s.data(), s.size(), 32); }

// JA4's hashes: the first 12 hex digits of SHA-256; an empty list hashes to zeros.
std::string ja4_hash(const std::string& s) {
  return s.empty() ? std::string(12, '0') : digest_hex(sha256(), s.data(), s.size(), 12);
}

template <typename T>
std::string dash_decimal(const std::vector<T>& values, bool drop_grease) {
  std::string out;
  for (T v : values) {
    if (drop_grease && is_grease(v)) continue;
    if (!out.empty()) out += '-';
    out += std::to_string(v);
  }
  return out;
}

std::vector<uint16_t> without_grease(const std::vector<uint16_t>& values) {
  std::vector<uint16_t> out;
  out.reserve(values.size());
  for (uint16_t v : values)
    if (!is_grease(v)) out.push_back(v);
  return out;
}

std::vector<uint16_t> extension_types(const std::vector<Extension>& extensions) {
  std::vector<uint16_t> out;
  out.reserve(extensions.size());
  for (const auto& x : extensions) out.push_back(x.type);
  return out;
}

std::string comma_hex(const std::vector<uint16_t>& values) {
  std::string out;
  out.reserve(values.size() * 5);
  for (uint16_t v : values) {
    if (!out.empty()) out += ',';
    for (int shift = 12; shift >= 0; shift -= 4) out += kHexDigits[(v >> shift) & 0xf];
  }
  return out;
}

std::string two_digits(size_t n) { return fmt::format("{:02d}", std::min<size_t>(n, 99)); }

bool alphanumeric(uint8_t c) { return std::isalnum(c) && c < 0x80; }

// The first and last character of the first ALPN value; their hex digits when
// either is not alphanumeric; "00" without ALPN.
std::string ja4_alpn(const std::optional<std::string>& first) {
  if (!first || first->empty()) return "00";
  auto f = static_cast<uint8_t>(first->front()), l = static_cast<uint8_t>(first->back());
  if (alphanumeric(f) && alphanumeric(l)) return {static_cast<char>(f), static_cast<char>(l)};
  std::string hex = fmt::format("{:02x}{:02x}", f, l);
  return {hex.front(), hex.back()};
}

// ---- tlsfingerprint.io ----

uint16_t ungrease(uint16_t v) { return is_grease(v) ? 0x0a0a : v; }

void push_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

// The reference reads some extensions as a list of 16-bit values over the
// whole body, its length prefix included, GREASE mapped; a trailing odd byte is dropped.
std::vector<uint8_t> ungreased_u16_bytes(Bytes b) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < b.size(); i += 2) push_u16(out, ungrease(static_cast<uint16_t>(b[i] << 8 | b[i + 1])));
  return out;
}

uint16_t be16_prefix(Bytes b, size_t at) {
  // Big-endian value of up to two bytes at `at` (fewer when the body ends).
  uint16_t v = 0;
  for (size_t i = at; i < at + 2 && i < b.size(); ++i) v = static_cast<uint16_t>(v << 8 | b[i]);
  return v;
}

std::vector<uint8_t> key_share_groups(Bytes b) {
  std::vector<uint8_t> out;
  size_t i = 2;
  while (i + 2 < b.size()) {
    uint16_t group = ungrease(be16_prefix(b, i));
    uint16_t key_length = be16_prefix(b, i + 2);
    push_u16(out, group);
    push_u16(out, key_length);
    i += 4 + key_length;
  }
  return out;
}

}  // namespace

std::string ja4_version(uint16_t v) {
  switch (v) {
    case 0x0304: return "13";
    case 0x0303: return "12";
    case 0x0302: return "11";
    case 0x0301: return "10";
    case 0x0300: return "s3";
    case 0x0200: return "s2";
    case 0x0100: return "s1";
    default: return "00";
  }
}

Ja3 ja3(const ClientHello& h) {
  Ja3 j;
  j.full = fmt::format("{},{},{},{},{}", h.version, dash_decimal(h.ciphers, true),
                       dash_decimal(extension_types(h.extensions), true), dash_decimal(h.groups, true),
                       dash_decimal(h.point_formats, false));
  j.hash = md5_hex(j.full);
  return j;
}

Ja3 ja3s(const ServerHello& h) {
  Ja3 j;
  j.full = fmt::format("{},{},{}", h.version, h.cipher, dash_decimal(extension_types(h.extensions), true));
  j.hash = md5_hex(j.full);
  return j;
}

Ja4 ja4(const ClientHello& h, char transport, bool original_order) {
  auto ciphers = without_grease(h.ciphers);
  auto extensions = without_grease(extension_types(h.extensions));
  auto versions = without_grease(h.supported_versions);
  uint16_t version = versions.empty() ? h.version : *std::max_element(versions.begin(), versions.end());
  std::optional<std::string> first_alpn;
  if (!h.alpn.empty()) first_alpn = h.alpn.front();
  std::string a = fmt::format("{}{}{}{}{}{}", transport, ja4_version(version), h.sni ? 'd' : 'i',
                              two_digits(ciphers.size()), two_digits(extensions.size()), ja4_alpn(first_alpn));

  std::string sigalgs = comma_hex(without_grease(h.signature_algorithms));
  auto with_sigalgs = [&](std::string list) { return sigalgs.empty() ? list : list + "_" + sigalgs; };
  // Sorted: without SNI and ALPN (they vary with the destination, not the client).
  std::vector<uint16_t> sorted_extensions;
  for (uint16_t e : extensions)
    if (e != ext::kServerName && e != ext::kAlpn) sorted_extensions.push_back(e);
  std::sort(sorted_extensions.begin(), sorted_extensions.end());
  auto sorted_ciphers = ciphers;
  std::sort(sorted_ciphers.begin(), sorted_ciphers.end());

  std::string b_sorted = comma_hex(sorted_ciphers);
  std::string c_sorted = sorted_extensions.empty() && sigalgs.empty() ? "" : with_sigalgs(comma_hex(sorted_extensions));
  Ja4 j;
  j.ja4 = fmt::format("{}_{}_{}", a, ja4_hash(b_sorted), ja4_hash(c_sorted));
  j.ja4_r = fmt::format("{}_{}_{}", a, b_sorted, c_sorted);
  if (!original_order) return j;
  std::string b_original = comma_hex(ciphers);
  std::string c_original = extensions.empty() && sigalgs.empty() ? "" : with_sigalgs(comma_hex(extensions));
  // As the reference does: with nothing but SNI/ALPN and no signature
  // algorithms, the original-order hash is zeros too (its raw form still lists them).
  j.ja4_o = fmt::format("{}_{}_{}", a, ja4_hash(b_original), ja4_hash(c_sorted.empty() ? "" : c_original));
  j.ja4_ro = fmt::format("{}_{}_{}", a, b_original, c_original);
  return j;
}

Ja4s ja4s(const ServerHello& h, char transport) {
  auto extensions = extension_types(h.extensions);
  std::string a = fmt::format("{}{}{}{}", transport, ja4_version(h.negotiated_version()), two_digits(extensions.size()),
                              ja4_alpn(h.alpn));
  std::string list = comma_hex(extensions);
  Ja4s j;
  j.ja4s = fmt::format("{}_{:04x}_{}", a, h.cipher, ja4_hash(list));
  j.ja4s_r = fmt::format("{}_{:04x}_{}", a, h.cipher, list);
  return j;
}

std::string tlsfp(const ClientHello& h) {
  std::vector<uint8_t> ciphers, extensions, groups, point_formats, sigalgs, alpn, key_share, psk_modes, versions,
      cert_compression, record_size_limit;
  for (uint16_t c : h.ciphers) push_u16(ciphers, ungrease(c));
  for (const auto& x : h.extensions) {
    push_u16(extensions, ungrease(x.type));
    Bytes d(x.data);
    switch (x.type) {
      case ext::kSupportedGroups: groups = ungreased_u16_bytes(d); break;
      case ext::kEcPointFormats: point_formats.assign(d.begin(), d.end()); break;
      case ext::kSignatureAlgorithms: sigalgs.assign(d.begin(), d.end()); break;
      case ext::kAlpn: alpn.assign(d.begin(), d.end()); break;
      case ext::kKeyShare: key_share = key_share_groups(d); break;
      case ext::kPskModes: psk_modes.assign(d.begin() + std::min<size_t>(1, d.size()), d.end()); break;
      case ext::kSupportedVersions: versions = ungreased_u16_bytes(d.subspan(std::min<size_t>(1, d.size()))); break;
      case ext::kCompressCertificate: cert_compression.assign(d.begin(), d.end()); break;
      case ext::kRecordSizeLimit: record_size_limit.assign(d.begin(), d.end()); break;
      default: break;
    }
  }
  std::vector<uint8_t> input;
  push_u16(input, h.record_version);
  push_u16(input, h.version);
  auto field = [&](const std::vector<uint8_t>& f) {
    uint32_t n = static_cast<uint32_t>(f.size());
    for (int shift = 24; shift >= 0; shift -= 8) input.push_back(static_cast<uint8_t>(n >> shift));
    input.insert(input.end(), f.begin(), f.end());
  };
  for (const std::vector<uint8_t>* f : std::initializer_list<const std::vector<uint8_t>*>{&ciphers, &h.compression, &extensions, &groups, &point_formats, &sigalgs, &alpn, &key_share,
                        &psk_modes, &versions, &cert_compression, &record_size_limit})
    field(*f);
  return digest_hex(sha1(), input.data(), input.size(), 16);
}

}  // namespace mw::fingerprint
