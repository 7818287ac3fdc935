// QUIC connections out of captured UDP datagrams: per UDP conversation
// (numbered as Wireshark's udp.stream), the client's Initials decrypted and
// its ClientHello put back together from CRYPTO frames (quic/initial.hpp).
// Emitted as TlsSession with transport 'q', so the same record and the same
// fingerprints serve TLS over TCP and QUIC.
#pragma once

#include "pcap/tls_sessions.hpp"
#include "quic/initial.hpp"

namespace mw::pcap {

class QuicSessionTable {
 public:
  using Emit = std::function<void(TlsSession&&)>;
  // `emit` receives each QUIC conversation once, at finish() (UDP has no
  // close) or when evicted; conversations that never carried QUIC are counted.
  explicit QuicSessionTable(Emit emit, size_t max_open = 200000);
  ~QuicSessionTable();
  void on_datagram(Clock::time_point when, const net::IpPacket& ip, const net::UdpDatagram& udp);
  void finish();

  struct Stats {
    uint64_t datagrams = 0, conversations = 0, quic = 0, evicted = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Conversation;
  struct Key {
    net::IpAddress a, b;
    uint16_t a_port = 0, b_port = 0;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  void emit(Conversation& c);

  Emit emit_;
  size_t max_open_;
  std::unordered_map<Key, std::unique_ptr<Conversation>, KeyHash> open_;
  Stats stats_;
};

}  // namespace mw::pcap
