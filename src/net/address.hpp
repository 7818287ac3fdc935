// IP addresses, prefixes and endpoints as plain values.
#pragma once

#include <sys/socket.h>

#include <tl/expected.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace mw::net {

struct IpAddress {
  int family = 0;                   // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4

  size_t size() const { return family == AF_INET ? 4 : 16; }
  int bits() const { return family == AF_INET ? 32 : 128; }
  std::string to_string() const;
  static tl::expected<IpAddress, std::string> parse(std::string_view text);
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// A hash of a connection's addresses and ports (FNV-1a over the bytes that vary).
size_t hash_flow(const IpAddress& a, const IpAddress& b, uint16_t a_port, uint16_t b_port);

struct Prefix {
  IpAddress base;  // host bits are zero
  int length = 0;

  bool contains(const IpAddress& addr) const;
  // Number of addresses, saturated at 2^63.
  uint64_t count() const;
  // The n-th address of the prefix (n < count()).
  IpAddress at(uint64_t n) const;
  std::string to_string() const;
  // "10.0.0.0/8", or a bare address (a /32 or /128).
  static tl::expected<Prefix, std::string> parse(std::string_view text);
};

struct Endpoint {
  IpAddress ip;
  uint16_t port = 0;

  // "1.2.3.4:443", "[2001:db8::1]:443"
  std::string to_string() const;
  socklen_t to_sockaddr(sockaddr_storage& out) const;
  static Endpoint from_sockaddr(const sockaddr* sa);
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// In the shipped blocklist (data/blocklist.conf): IANA special-purpose ranges
// that are not globally reachable (private, loopback, link-local,
// documentation), multicast, reserved. Scanning them is refused unless asked for.
bool is_reserved(const IpAddress& addr);

}  // namespace mw::net
