// TLS connections out of captured TCP packets: per connection, both
// directions reassembled (pcap/tcp_stream.hpp) and read as TLS handshake
// records (fingerprint/handshake_stream.hpp) until the handshake turns
// encrypted; the ClientHello, ServerHello and a cleartext certificate chain
// kept, with the IP TTL and IP ID of every packet each way. Plain data out;
// fingerprints and verdicts are computed from it elsewhere.
#pragma once

#include "fingerprint/handshake_stream.hpp"
#include "fingerprint/hello.hpp"
#include "net/address.hpp"
#include "net/packet.hpp"
#include "pcap/tcp_stream.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace mw::pcap {

using Clock = std::chrono::system_clock;

// What the packets one way looked like at the IP layer.
struct DirectionFacts {
  uint64_t packets = 0, payload_bytes = 0;
  struct TtlRun {
    uint8_t ttl = 0;
    uint64_t packets = 0;
    uint64_t first_packet = 0;  // index among this direction's packets
  };
  std::vector<TtlRun> ttl_runs;  // consecutive packets with one TTL (bounded)
  std::vector<uint32_t> ip_ids;  // the first kIpIdsKept (IPv4 only)
  static constexpr size_t kIpIdsKept = 64, kTtlRunsKept = 32;
  void add(const net::IpPacket& ip, size_t payload);
};

struct TlsSession {
  char transport = 't';  // 't' TLS over TCP, 'q' QUIC (JA4's first letter)
  uint64_t stream = 0;  // the connection's index in the file, as Wireshark's tcp.stream (udp.stream) counts
  net::Endpoint client, server;
  bool client_known = false;  // false: roles guessed (no SYN and no ClientHello seen)
  bool saw_syn = false, saw_fin = false, saw_rst = false;
  Clock::time_point first_seen, last_seen;
  std::optional<fingerprint::ClientHello> client_hello;
  std::optional<fingerprint::ServerHello> server_hello;
  std::vector<std::vector<uint8_t>> chain;  // DER, leaf first (TLS <= 1.2: in clear)
  std::vector<std::string> problems;        // parse errors and reassembly gaps, for people
  std::string client_state, server_state;   // fingerprint::HandshakeStream states at the end
  std::optional<std::pair<uint8_t, uint8_t>> server_alert;
  size_t client_preamble = 0, server_preamble = 0;  // bytes before TLS (a SOCKS or CONNECT proxy)
  DirectionFacts from_client, from_server;
};

class TlsSessionTable {
 public:
  using Emit = std::function<void(TlsSession&&)>;
  // `emit` receives each TLS connection once: when it closes, or at finish().
  // Connections that never showed a TLS hello are counted, not emitted.
  explicit TlsSessionTable(Emit emit, size_t max_open = 200000);
  ~TlsSessionTable();
  void on_packet(Clock::time_point when, const net::IpPacket& ip, const net::TcpSegment& tcp);
  void finish();

  struct Stats {
    uint64_t packets = 0, connections = 0, tls = 0, not_tls = 0, evicted = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Connection;
  struct Key {
    net::IpAddress a, b;
    uint16_t a_port = 0, b_port = 0;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  void close(Connection& c);
  void evict_some();

  Emit emit_;
  size_t max_open_;
  std::unordered_map<Key, std::unique_ptr<Connection>, KeyHash> open_;
  // Connections that ended: their stragglers (the last ACKs) are not a new
  // connection; a new SYN is. Bounded: forgotten wholesale when full.
  std::unordered_set<Key, KeyHash> closed_;
  Stats stats_;
};

}  // namespace mw::pcap
