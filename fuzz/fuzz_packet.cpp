// A captured frame as the trace capture or a pcap reader sees it: the first
// byte picks the link type, the rest is the frame. Every layer is parsed and
// the ICMP quote is offered to a probe matcher holding one probe built from
// the same packet, so the attribution code runs on hostile quotes too.
#include "net/packet.hpp"
#include "trace/probe_match.hpp"

#include <array>

namespace {

bool inside(mw::net::Bytes part, const uint8_t* begin, const uint8_t* end) {
  return part.empty() || (part.data() >= begin && part.data() + part.size() <= end);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mw;
  if (size < 1) return 0;
  constexpr std::array kLinks{net::kLinkEthernet, net::kLinkRaw, net::kLinkRawAlt, net::kLinkLinuxSll,
                              net::kLinkLinuxSll2, net::kLinkNull, net::kLinkLoop};
  int link = kLinks[data[0] % kLinks.size()];
  net::Bytes frame{data + 1, size - 1};
  const uint8_t* end = data + size;
  (void)net::frame_is_outgoing(link, frame);
  auto ip_bytes = net::ip_from_frame(link, frame);
  if (!ip_bytes) return 0;
  if (!inside(*ip_bytes, data, end)) __builtin_trap();
  auto ip = net::parse_ip(*ip_bytes);
  if (!ip) return 0;
  if (!inside(ip->payload, data, end)) __builtin_trap();
  trace::ProbeMatcher matcher;
  if (auto tcp = net::parse_tcp(*ip)) {
    if (!inside(tcp->payload, data, end) || !inside(tcp->options, data, end)) __builtin_trap();
    matcher.add(1, {ip->src, ip->dst, tcp->src_port, tcp->dst_port});
    matcher.note_sent(1, *ip, *tcp);
  }
  if (auto icmp = net::parse_icmp_error(*ip)) {
    if (!inside(icmp->quoted.payload, data, end)) __builtin_trap();
    if (icmp->quoted_tcp) {
      matcher.add(2, {icmp->quoted.src, icmp->quoted.dst, icmp->quoted_src_port, icmp->quoted_dst_port});
      if (auto quoted_tcp = net::parse_tcp(icmp->quoted)) matcher.note_sent(2, icmp->quoted, *quoted_tcp);
    }
    (void)matcher.attribute(*icmp);
  }
  return 0;
}
