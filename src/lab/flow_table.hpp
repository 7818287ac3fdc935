// The device's view of port-443 TCP connections: what it saw of each
// handshake (the options it must copy when it takes a connection over) and
// what it decided. Kept apart from the packet handling so that the TCP cases
// a loaded device meets (a SYN sent twice, a port used again) are tested
// without a lab.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace mw::lab {

struct FlowKey {
  uint32_t client_ip, server_ip;  // network order
  uint16_t client_port, server_port;
  bool operator==(const FlowKey&) const = default;
};
struct FlowKeyHash {
  size_t operator()(const FlowKey& k) const {
    return std::hash<uint64_t>()((uint64_t{k.client_ip} << 32) ^ k.server_ip ^ (uint64_t{k.client_port} << 16) ^
                                 k.server_port);
  }
};

struct TcpOptions {
  uint16_t mss = 536;
  int wscale = -1;
  bool sack = false;
};

// The options of a SYN or SYN-ACK; stops at the first malformed one.
TcpOptions parse_tcp_options(const uint8_t* p, size_t len);

struct Flow {
  using Clock = std::chrono::steady_clock;
  TcpOptions client, server;
  uint32_t client_isn = 0;  // the SYN's sequence number: a SYN sent again carries it again
  bool syn_ack_seen = false;
  enum class State { tracking, hijacked, passed } state = State::tracking;
  std::vector<uint8_t> hello;  // the client's bytes so far (one segment, or more when reassembling)
  uint32_t hello_seq = 0;      // sequence number of hello[0]
  Clock::time_point last_seen = Clock::now();
};

class FlowTable {
 public:
  // Past `max_flows`, flows idle for `idle` are forgotten at the next SYN.
  explicit FlowTable(size_t max_flows = 100000, std::chrono::seconds idle = std::chrono::seconds(60))
      : max_flows_(max_flows), idle_(idle) {}

  // A client's SYN: true when a flow begins (a new one, or a new connection
  // on a port used before). A SYN sent again because its SYN-ACK was slow
  // leaves the flow as it is: starting over would forget a SYN-ACK already
  // seen, which the server does not send again to a connection it has
  // accepted, and the whole connection would go by unseen.
  bool client_syn(const FlowKey& key, uint32_t isn, const TcpOptions& options);

  // The server's SYN-ACK, under the client's key.
  void server_syn_ack(const FlowKey& key, const TcpOptions& options);

  // The flow of a client's data segment once its handshake was seen both
  // ways; null when the device missed it.
  Flow* established(const FlowKey& key);

  size_t size() const { return flows_.size(); }

 private:
  std::unordered_map<FlowKey, Flow, FlowKeyHash> flows_;
  size_t max_flows_;
  std::chrono::seconds idle_;
};

}  // namespace mw::lab
