#include "net/packet.hpp"

#include <algorithm>

#include <netinet/in.h>

namespace mw::net {
namespace {

uint16_t be16(Bytes b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
uint32_t be32(Bytes b, size_t at) {
  return static_cast<uint32_t>(b[at]) << 24 | static_cast<uint32_t>(b[at + 1]) << 16 |
         static_cast<uint32_t>(b[at + 2]) << 8 | b[at + 3];
}

constexpr uint16_t kEtherIpv4 = 0x0800, kEtherIpv6 = 0x86dd, kEtherVlan = 0x8100, kEtherQinQ = 0x88a8;

std::optional<Bytes> by_ethertype(uint16_t type, Bytes rest) {
  if (type == kEtherIpv4 || type == kEtherIpv6) return rest;
  return std::nullopt;
}

}  // namespace

std::optional<Bytes> ip_from_frame(int linktype, Bytes f) {
  switch (linktype) {
    case kLinkEthernet: {
      if (f.size() < 14) return std::nullopt;
      uint16_t type = be16(f, 12);
      size_t at = 14;
      // Up to two VLAN tags (802.1Q, 802.1ad QinQ).
      for (int tags = 0; (type == kEtherVlan || type == kEtherQinQ) && tags < 2; ++tags) {
        if (f.size() < at + 4) return std::nullopt;
        type = be16(f, at + 2);
        at += 4;
      }
      return by_ethertype(type, f.subspan(at));
    }
    case kLinkLinuxSll:
      if (f.size() < 16) return std::nullopt;
      return by_ethertype(be16(f, 14), f.subspan(16));
    case kLinkLinuxSll2:
      if (f.size() < 20) return std::nullopt;
      return by_ethertype(be16(f, 0), f.subspan(20));
    case kLinkRaw:
    case kLinkRawAlt:
      return f;
    case kLinkNull:
    case kLinkLoop: {
      // BSD loopback: a 4-byte address family, in the capturing host's byte
      // order (NULL) or network order (LOOP). IPv6 is 24, 28 or 30 by BSD.
      if (f.size() < 4) return std::nullopt;
      uint32_t be = static_cast<uint32_t>(f[0]) << 24 | f[1] << 16 | f[2] << 8 | f[3];
      uint32_t le = static_cast<uint32_t>(f[3]) << 24 | f[2] << 16 | f[1] << 8 | f[0];
      uint32_t family = linktype == kLinkLoop ? be : std::min(be, le);
      if (family == 2 || family == 24 || family == 28 || family == 30) return f.subspan(4);
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

bool frame_is_outgoing(int linktype, Bytes f) {
  constexpr uint8_t kOutgoing = 4;  // PACKET_OUTGOING
  if (linktype == kLinkLinuxSll) return f.size() >= 2 && be16(f, 0) == kOutgoing;
  if (linktype == kLinkLinuxSll2) return f.size() >= 11 && f[10] == kOutgoing;
  return false;
}

std::optional<IpPacket> parse_ip(Bytes b) {
  if (b.empty()) return std::nullopt;
  IpPacket ip;
  int version = b[0] >> 4;
  if (version == 4) {
    if (b.size() < 20) return std::nullopt;
    size_t header = static_cast<size_t>(b[0] & 0x0f) * 4;
    if (header < 20 || header > b.size()) return std::nullopt;
    ip.family = AF_INET;
    ip.tos = b[1];
    ip.total_length = be16(b, 2);
    ip.id = be16(b, 4);
    uint16_t frag = be16(b, 6);
    ip.fragment = (frag & 0x3fff) != 0;  // MF set or a non-zero offset
    ip.ttl = b[8];
    ip.protocol = b[9];
    std::copy(b.begin() + 12, b.begin() + 16, ip.src.bytes.begin());
    std::copy(b.begin() + 16, b.begin() + 20, ip.dst.bytes.begin());
    ip.src.family = ip.dst.family = AF_INET;
    // Trim link-layer padding; a quoted packet is shorter than it says.
    size_t end = ip.total_length >= header ? std::min<size_t>(ip.total_length, b.size()) : b.size();
    ip.payload = b.subspan(header, end - header);
    return ip;
  }
  if (version == 6) {
    if (b.size() < 40) return std::nullopt;
    ip.family = AF_INET6;
    ip.tos = static_cast<uint8_t>((be16(b, 0) >> 4) & 0xff);
    ip.total_length = static_cast<uint16_t>(std::min<uint32_t>(40u + be16(b, 4), 0xffff));
    ip.ttl = b[7];
    std::copy(b.begin() + 8, b.begin() + 24, ip.src.bytes.begin());
    std::copy(b.begin() + 24, b.begin() + 40, ip.dst.bytes.begin());
    ip.src.family = ip.dst.family = AF_INET6;
    size_t end = std::min<size_t>(40u + be16(b, 4), b.size());
    uint8_t next = b[6];
    size_t at = 40;
    // Skip extension headers (hop-by-hop, routing, fragment, destination), bounded.
    for (int n = 0; n < 8; ++n) {
      if (next == 0 || next == 43 || next == 60) {
        if (end < at + 8) return std::nullopt;
        size_t len = (static_cast<size_t>(b[at + 1]) + 1) * 8;
        next = b[at];
        if (end < at + len) return std::nullopt;
        at += len;
      } else if (next == 44) {
        if (end < at + 8) return std::nullopt;
        uint16_t off = be16(b, at + 2);
        ip.fragment = (off & 0xfff9) != 0;  // offset or M flag
        next = b[at];
        at += 8;
      } else {
        break;
      }
    }
    ip.protocol = next;
    ip.payload = b.subspan(at, end - at);
    return ip;
  }
  return std::nullopt;
}

std::optional<TcpSegment> parse_tcp(const IpPacket& ip) {
  if (ip.protocol != IPPROTO_TCP || ip.fragment) return std::nullopt;
  Bytes b = ip.payload;
  if (b.size() < 20) return std::nullopt;
  size_t header = static_cast<size_t>(b[12] >> 4) * 4;
  if (header < 20 || header > b.size()) return std::nullopt;
  TcpSegment t;
  t.src_port = be16(b, 0);
  t.dst_port = be16(b, 2);
  t.seq = be32(b, 4);
  t.ack = be32(b, 8);
  t.flags = b[13];
  t.window = be16(b, 14);
  t.options = b.subspan(20, header - 20);
  t.payload = b.subspan(header);
  return t;
}

std::optional<UdpDatagram> parse_udp(const IpPacket& ip) {
  if (ip.protocol != IPPROTO_UDP || ip.fragment) return std::nullopt;
  Bytes b = ip.payload;
  if (b.size() < 8) return std::nullopt;
  size_t length = be16(b, 4);
  if (length < 8) return std::nullopt;
  UdpDatagram u;
  u.src_port = be16(b, 0);
  u.dst_port = be16(b, 2);
  u.payload = b.subspan(8, std::min(length, b.size()) - 8);
  return u;
}

std::optional<IcmpError> parse_icmp_error(const IpPacket& ip) {
  Bytes b = ip.payload;
  if (b.size() < 8 || ip.fragment) return std::nullopt;
  IcmpError e;
  e.type = b[0];
  e.code = b[1];
  if (ip.family == AF_INET && ip.protocol == IPPROTO_ICMP) {
    if (e.type == 11) e.kind = IcmpError::Kind::time_exceeded;
    else if (e.type == 3) e.kind = IcmpError::Kind::unreachable;
    else return std::nullopt;  // echo and the like quote nothing
  } else if (ip.family == AF_INET6 && ip.protocol == IPPROTO_ICMPV6) {
    if (e.type == 3) e.kind = IcmpError::Kind::time_exceeded;
    else if (e.type == 1) e.kind = IcmpError::Kind::unreachable;
    else return std::nullopt;
  } else {
    return std::nullopt;
  }
  auto quoted = parse_ip(b.subspan(8));
  if (!quoted) return std::nullopt;
  e.quoted = *quoted;
  // Only the first 8 transport bytes are promised: ports and sequence number.
  if (quoted->protocol == IPPROTO_TCP && !quoted->fragment && quoted->payload.size() >= 8) {
    e.quoted_src_port = be16(quoted->payload, 0);
    e.quoted_dst_port = be16(quoted->payload, 2);
    e.quoted_seq = be32(quoted->payload, 4);
    e.quoted_tcp = true;
  }
  return e;
}

}  // namespace mw::net
