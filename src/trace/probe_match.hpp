// Which probe an ICMP error belongs to. A router quotes the packet it dropped:
// its addresses, ports and TCP sequence number identify the probe's TCP
// connection and the segment (our ClientHello) exactly. The original 2019
// tool instead took "whatever ICMP arrived last", which misattributes as soon
// as two probes are in flight or an ICMP is late.
#pragma once

#include "net/address.hpp"
#include "net/packet.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace mw::trace {

using ProbeId = uint64_t;

struct FlowKey {
  net::IpAddress local, remote;
  uint16_t local_port = 0, remote_port = 0;
  friend bool operator==(const FlowKey&, const FlowKey&) = default;
};

struct FlowKeyHash {
  size_t operator()(const FlowKey& k) const;
};

// A field of the quoted packet that differs from what we sent: a middlebox
// on the path rewrote it (NAT, sequence randomisation, DSCP remarking).
struct FieldChange {
  std::string field;  // "src", "dst", "sport", "dport", "seq", "tos", "ip_id", "length"
  std::string sent, quoted;
};

struct Attribution {
  ProbeId probe = 0;
  bool by_sequence = false;  // found by sequence number after the addresses or ports changed
  std::vector<FieldChange> changes;
};

class ProbeMatcher {
 public:
  void add(ProbeId id, const FlowKey& key);
  void remove(ProbeId id);
  std::optional<ProbeId> find(const FlowKey& key) const;
  // A data segment the capture saw the probe send (the ClientHello, or a
  // retransmission of it): it fixes the sequence range and the header fields
  // a quote is checked against.
  void note_sent(ProbeId id, const net::IpPacket& ip, const net::TcpSegment& tcp);
  std::optional<Attribution> attribute(const net::IcmpError& icmp) const;
  size_t size() const { return probes_.size(); }

 private:
  struct Sent {
    FlowKey key;
    bool has_data = false;
    uint32_t first_seq = 0, end_seq = 0;
    uint8_t tos = 0;
    std::vector<uint16_t> total_lengths;  // per sent segment (bounded)
    std::vector<uint32_t> ip_ids;         // per sent segment (bounded)
  };
  std::unordered_map<ProbeId, Sent> probes_;
  std::unordered_map<FlowKey, ProbeId, FlowKeyHash> by_flow_;
  std::map<uint32_t, ProbeId> by_first_seq_;
};

}  // namespace mw::trace
