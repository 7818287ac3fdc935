#include "lab/flow_table.hpp"

namespace mw::lab {

TcpOptions parse_tcp_options(const uint8_t* p, size_t len) {
  TcpOptions o;
  size_t i = 0;
  while (i < len) {
    uint8_t kind = p[i];
    if (kind == 0) break;
    if (kind == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= len || p[i + 1] < 2 || i + p[i + 1] > len) break;
    uint8_t olen = p[i + 1];
    if (kind == 2 && olen == 4) o.mss = static_cast<uint16_t>((p[i + 2] << 8) | p[i + 3]);
    if (kind == 3 && olen == 3) o.wscale = p[i + 2];
    if (kind == 4) o.sack = true;
    i += olen;
  }
  return o;
}

bool FlowTable::client_syn(const FlowKey& key, uint32_t isn, const TcpOptions& options) {
  auto [it, fresh] = flows_.try_emplace(key);
  if (!fresh && it->second.client_isn == isn) return false;
  Flow flow;
  flow.client = options;
  flow.client_isn = isn;
  it->second = std::move(flow);
  if (flows_.size() > max_flows_) {
    auto now = Flow::Clock::now();
    for (auto i = flows_.begin(); i != flows_.end();)
      i = now - i->second.last_seen > idle_ && !(i->first == key) ? flows_.erase(i) : std::next(i);
  }
  return true;
}

void FlowTable::server_syn_ack(const FlowKey& key, const TcpOptions& options) {
  auto it = flows_.find(key);
  if (it == flows_.end()) return;
  it->second.server = options;
  it->second.syn_ack_seen = true;
}

Flow* FlowTable::established(const FlowKey& key) {
  auto it = flows_.find(key);
  if (it == flows_.end() || !it->second.syn_ack_seen) return nullptr;
  return &it->second;
}

}  // namespace mw::lab
