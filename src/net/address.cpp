#include "net/address.hpp"

#include "net/prefix_set.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>
#include <vector>

namespace mw::net {

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), buf, sizeof buf);
  return buf;
}

tl::expected<IpAddress, std::string> IpAddress::parse(std::string_view text) {
  std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return tl::unexpected("'" + s + "' is not an IPv4 or IPv6 address");
}

bool Prefix::contains(const IpAddress& addr) const {
  if (addr.family != base.family) return false;
  int full = length / 8, rest = length % 8;
  if (std::memcmp(addr.bytes.data(), base.bytes.data(), static_cast<size_t>(full)) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (addr.bytes[static_cast<size_t>(full)] & mask) == (base.bytes[static_cast<size_t>(full)] & mask);
}

uint64_t Prefix::count() const {
  int host_bits = base.bits() - length;
  if (host_bits >= 63) return uint64_t{1} << 63;
  return uint64_t{1} << host_bits;
}

IpAddress Prefix::at(uint64_t n) const {
  IpAddress out = base;
  // Add n to the address, big-endian, from the last byte up.
  for (size_t i = out.size(); i-- > 0 && n != 0;) {
    uint64_t sum = out.bytes[i] + (n & 0xff);
    out.bytes[i] = static_cast<uint8_t>(sum);
    n = (n >> 8) + (sum >> 8);
  }
  return out;
}

std::string Prefix::to_string() const { return base.to_string() + "/" + std::to_string(length); }

tl::expected<Prefix, std::string> Prefix::parse(std::string_view text) {
  auto slash = text.find('/');
  auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return tl::unexpected(addr.error());
  Prefix p{*addr, addr->bits()};
  if (slash != std::string_view::npos) {
    auto len_text = text.substr(slash + 1);
    int len = -1;
    auto [ptr, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (ec != std::errc() || ptr != len_text.data() + len_text.size() || len < 0 || len > addr->bits())
      return tl::unexpected("'" + std::string(text) + "': prefix length must be 0.." + std::to_string(addr->bits()));
    p.length = len;
  }
  // Clear host bits so "10.1.2.3/8" means 10.0.0.0/8.
  for (int bit = p.length; bit < p.base.bits(); ++bit)
    p.base.bytes[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  return p;
}

std::string Endpoint::to_string() const {
  if (ip.family == AF_INET6) return "[" + ip.to_string() + "]:" + std::to_string(port);
  return ip.to_string() + ":" + std::to_string(port);
}

socklen_t Endpoint::to_sockaddr(sockaddr_storage& out) const {
  std::memset(&out, 0, sizeof out);
  if (ip.family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, ip.bytes.data(), 4);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, ip.bytes.data(), 16);
  return sizeof(sockaddr_in6);
}

Endpoint Endpoint::from_sockaddr(const sockaddr* sa) {
  Endpoint e;
  if (sa->sa_family == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
    e.ip.family = AF_INET;
    std::memcpy(e.ip.bytes.data(), &sin->sin_addr, 4);
    e.port = ntohs(sin->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
    e.ip.family = AF_INET6;
    std::memcpy(e.ip.bytes.data(), &sin6->sin6_addr, 16);
    e.port = ntohs(sin6->sin6_port);
  }
  return e;
}

bool is_reserved(const IpAddress& addr) {
  static const PrefixSet set(shipped_blocklist());  // immutable once built
  return set.contains(addr);
}

size_t hash_flow(const IpAddress& a, const IpAddress& b, uint16_t a_port, uint16_t b_port) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  mix(a.bytes.data(), a.size());
  mix(b.bytes.data(), b.size());
  mix(reinterpret_cast<const uint8_t*>(&a_port), 2);
  mix(reinterpret_cast<const uint8_t*>(&b_port), 2);
  return static_cast<size_t>(h);
}

}  // namespace mw::net
