#include "trace/probe_match.hpp"

#include <algorithm>

namespace mw::trace {
namespace {

constexpr size_t kMaxSegmentsKept = 16;

bool seq_in(uint32_t seq, uint32_t first, uint32_t end) {
  // Modulo 2^32: a range may wrap.
  return static_cast<uint32_t>(seq - first) < static_cast<uint32_t>(end - first);
}

template <typename T>
void push_bounded(std::vector<T>& v, T value) {
  if (v.size() < kMaxSegmentsKept && std::find(v.begin(), v.end(), value) == v.end()) v.push_back(value);
}

}  // namespace

size_t FlowKeyHash::operator()(const FlowKey& k) const {
  return net::hash_flow(k.local, k.remote, k.local_port, k.remote_port);
}

void ProbeMatcher::add(ProbeId id, const FlowKey& key) {
  probes_[id].key = key;
  by_flow_[key] = id;
}

void ProbeMatcher::remove(ProbeId id) {
  auto it = probes_.find(id);
  if (it == probes_.end()) return;
  auto flow = by_flow_.find(it->second.key);
  if (flow != by_flow_.end() && flow->second == id) by_flow_.erase(flow);
  if (it->second.has_data) {
    auto s = by_first_seq_.find(it->second.first_seq);
    if (s != by_first_seq_.end() && s->second == id) by_first_seq_.erase(s);
  }
  probes_.erase(it);
}

std::optional<ProbeId> ProbeMatcher::find(const FlowKey& key) const {
  auto it = by_flow_.find(key);
  if (it == by_flow_.end()) return std::nullopt;
  return it->second;
}

void ProbeMatcher::note_sent(ProbeId id, const net::IpPacket& ip, const net::TcpSegment& tcp) {
  auto it = probes_.find(id);
  if (it == probes_.end() || tcp.payload.empty()) return;
  Sent& s = it->second;
  uint32_t end = tcp.seq + static_cast<uint32_t>(tcp.payload.size());
  if (!s.has_data) {
    s.has_data = true;
    s.first_seq = tcp.seq;
    s.end_seq = end;
    s.tos = ip.tos;
    by_first_seq_[s.first_seq] = id;
  } else if (static_cast<int32_t>(end - s.end_seq) > 0) {
    s.end_seq = end;
  }
  push_bounded(s.total_lengths, ip.total_length);
  push_bounded(s.ip_ids, ip.id);
}

std::optional<Attribution> ProbeMatcher::attribute(const net::IcmpError& icmp) const {
  if (!icmp.quoted_tcp) return std::nullopt;
  FlowKey key{icmp.quoted.src, icmp.quoted.dst, icmp.quoted_src_port, icmp.quoted_dst_port};
  Attribution a;
  const Sent* sent = nullptr;
  if (auto flow = by_flow_.find(key); flow != by_flow_.end()) {
    a.probe = flow->second;
    sent = &probes_.at(a.probe);
  } else {
    // The addresses or ports were rewritten on the way (NAT): a sequence
    // number is 32 random bits per connection, so it still names the probe.
    // The range holding it starts at the nearest first sequence number at or
    // below it, or, for a range that wraps past 2^32, at the highest one.
    if (by_first_seq_.empty()) return std::nullopt;
    auto holds = [&](std::map<uint32_t, ProbeId>::const_iterator it) {
      const Sent& s = probes_.at(it->second);
      return seq_in(icmp.quoted_seq, s.first_seq, s.end_seq);
    };
    auto it = by_first_seq_.upper_bound(icmp.quoted_seq);
    if (it != by_first_seq_.begin() && holds(std::prev(it))) {
      --it;
    } else if (holds(std::prev(by_first_seq_.end()))) {
      it = std::prev(by_first_seq_.end());
    } else {
      return std::nullopt;
    }
    a.probe = it->second;
    a.by_sequence = true;
    sent = &probes_.at(a.probe);
  }
  auto change = [&](const char* field, const std::string& was, const std::string& now) {
    if (was != now) a.changes.push_back({field, was, now});
  };
  change("src", sent->key.local.to_string(), icmp.quoted.src.to_string());
  change("dst", sent->key.remote.to_string(), icmp.quoted.dst.to_string());
  change("sport", std::to_string(sent->key.local_port), std::to_string(icmp.quoted_src_port));
  change("dport", std::to_string(sent->key.remote_port), std::to_string(icmp.quoted_dst_port));
  if (sent->has_data) {
    if (!seq_in(icmp.quoted_seq, sent->first_seq, sent->end_seq))
      change("seq", std::to_string(sent->first_seq), std::to_string(icmp.quoted_seq));
    change("tos", std::to_string(sent->tos), std::to_string(icmp.quoted.tos));
    if (icmp.quoted.family == AF_INET &&
        std::find(sent->ip_ids.begin(), sent->ip_ids.end(), icmp.quoted.id) == sent->ip_ids.end())
      change("ip_id", std::to_string(sent->ip_ids.empty() ? 0 : sent->ip_ids.front()), std::to_string(icmp.quoted.id));
    if (std::find(sent->total_lengths.begin(), sent->total_lengths.end(), icmp.quoted.total_length) ==
        sent->total_lengths.end())
      change("length", std::to_string(sent->total_lengths.empty() ? 0 : sent->total_lengths.front()),
             std::to_string(icmp.quoted.total_length));
  }
  return a;
}

}  // namespace mw::trace
