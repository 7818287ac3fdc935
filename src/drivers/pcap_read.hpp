// `mitmwatch pcap`: every TLS connection of a capture file, read packet by
// packet (libpcap: pcap and pcapng; Ethernet, VLAN, Linux cooked, raw IP;
// IPv4 and IPv6): TCP into pcap::TlsSessionTable, UDP (QUIC) into
// pcap::QuicSessionTable.
#pragma once

#include "pcap/quic_sessions.hpp"
#include "pcap/tls_sessions.hpp"

#include <tl/expected.hpp>

#include <functional>
#include <string>

namespace mw::drivers {

struct PcapReadStats {
  uint64_t frames = 0, tcp_packets = 0, udp_datagrams = 0, not_ip = 0, fragments = 0, bytes = 0;
  pcap::TlsSessionTable::Stats sessions;
  pcap::QuicSessionTable::Stats quic;
  std::string error;  // set when the file ended in the middle (truncated, corrupt)
};

struct PcapReadHooks {
  std::function<void(pcap::TlsSession&&)> on_session;
  std::function<void(uint64_t bytes_read)> on_progress;  // now and then
};

// Errors opening the file are returned; an error in the middle of it ends the
// reading with what was read so far emitted and `error` set.
tl::expected<PcapReadStats, std::string> read_pcap(const std::string& path, const PcapReadHooks& hooks);

}  // namespace mw::drivers
