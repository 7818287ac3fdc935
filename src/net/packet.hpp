// Packet headers from raw bytes: link layer (Ethernet, VLAN, Linux cooked v1
// and v2, BSD loopback, raw IP), IPv4/IPv6, TCP and ICMP errors with the packet they quote.
// Parsers never throw and never read past the span: a short or lying header
// ends the parse with nullopt (the PcapPlusPlus discipline). Views point into
// the caller's buffer.
#pragma once

#include "net/address.hpp"

#include <cstdint>
#include <optional>
#include <span>

namespace mw::net {

using Bytes = std::span<const uint8_t>;

// libpcap link types this code reads (DLT_* values).
inline constexpr int kLinkEthernet = 1;
inline constexpr int kLinkRaw = 101;        // LINKTYPE_RAW
inline constexpr int kLinkRawAlt = 12;      // DLT_RAW on Linux
inline constexpr int kLinkLinuxSll = 113;
inline constexpr int kLinkLinuxSll2 = 276;
inline constexpr int kLinkNull = 0;         // BSD loopback, host byte order
inline constexpr int kLinkLoop = 108;       // BSD loopback, network byte order

struct IpPacket {
  int family = 0;  // AF_INET or AF_INET6
  IpAddress src, dst;
  uint8_t ttl = 0;         // hop limit for IPv6
  uint8_t tos = 0;         // traffic class for IPv6
  uint32_t id = 0;         // IPv4 identification (0 for IPv6)
  uint16_t total_length = 0;
  uint8_t protocol = 0;    // next header after IPv6 extension headers
  bool fragment = false;   // a non-first fragment, or one with more to come
  Bytes payload;           // clipped to what was captured
};

struct TcpSegment {
  uint16_t src_port = 0, dst_port = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  Bytes options;
  Bytes payload;

  static constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;
  bool has(uint8_t f) const { return (flags & f) != 0; }
};

// What an ICMP or ICMPv6 error message carries: its type, and as much of the
// offending packet as the router quoted (at least the first 8 bytes of TCP:
// ports and sequence number, per RFC 792).
struct IcmpError {
  enum class Kind { time_exceeded, unreachable, other };
  Kind kind = Kind::other;
  uint8_t type = 0, code = 0;
  IpPacket quoted;  // the quoted IP header; payload is the quoted transport bytes
  uint16_t quoted_src_port = 0, quoted_dst_port = 0;
  uint32_t quoted_seq = 0;
  bool quoted_tcp = false;  // the quoted packet is TCP with ports and seq present
};

// The IP packet inside a frame of the given link type; nullopt if it holds none.
std::optional<Bytes> ip_from_frame(int linktype, Bytes frame);
// For Linux cooked frames: the packet went out of this host (SLL type 4).
bool frame_is_outgoing(int linktype, Bytes frame);

std::optional<IpPacket> parse_ip(Bytes bytes);
std::optional<TcpSegment> parse_tcp(const IpPacket& ip);
struct UdpDatagram {
  uint16_t src_port = 0, dst_port = 0;
  Bytes payload;  // as the UDP length says, clipped to what was captured
};
std::optional<UdpDatagram> parse_udp(const IpPacket& ip);
std::optional<IcmpError> parse_icmp_error(const IpPacket& ip);

}  // namespace mw::net
