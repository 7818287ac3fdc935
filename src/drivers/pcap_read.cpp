#include "drivers/pcap_read.hpp"

#include "net/capture.hpp"
#include "net/packet.hpp"
#include "pcap/quic_sessions.hpp"

namespace mw::drivers {

tl::expected<PcapReadStats, std::string> read_pcap(const std::string& path, const PcapReadHooks& hooks) {
  auto file = net::PcapFile::open(path);
  if (!file) return tl::unexpected(file.error());
  int linktype = file->linktype();
  PcapReadStats stats;
  pcap::TlsSessionTable table(hooks.on_session);
  pcap::QuicSessionTable quic(hooks.on_session);
  net::CapturedPacket pkt;
  for (;;) {
    auto next = file->next(pkt);
    if (next == net::PcapFile::Next::end) break;
    if (next == net::PcapFile::Next::error) {
      stats.error = file->error();
      break;
    }
    ++stats.frames;
    stats.bytes += pkt.frame.size();
    if (hooks.on_progress && stats.frames % 65536 == 0) hooks.on_progress(file->position());
    auto ip_bytes = net::ip_from_frame(linktype, pkt.frame);
    if (!ip_bytes) {
      ++stats.not_ip;
      continue;
    }
    auto ip = net::parse_ip(*ip_bytes);
    if (!ip) {
      ++stats.not_ip;
      continue;
    }
    if (ip->fragment) {
      ++stats.fragments;  // TCP in IP fragments is rare and not reassembled
      continue;
    }
    if (auto tcp = net::parse_tcp(*ip)) {
      ++stats.tcp_packets;
      table.on_packet(pkt.when, *ip, *tcp);
    } else if (auto udp = net::parse_udp(*ip)) {
      ++stats.udp_datagrams;
      quic.on_datagram(pkt.when, *ip, *udp);
    }
  }
  table.finish();
  quic.finish();
  stats.sessions = table.stats();
  stats.quic = quic.stats();
  if (hooks.on_progress) hooks.on_progress(file->position());
  return stats;
}

}  // namespace mw::drivers
