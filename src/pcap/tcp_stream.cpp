#include "pcap/tcp_stream.hpp"

namespace mw::pcap {

void TcpStream::on_syn(uint32_t seq) {
  if (!next_ || delivered_ == 0) next_ = seq + 1;
}

void TcpStream::deliver(uint32_t seq, std::span<const uint8_t> payload, const Sink& sink) {
  // Modulo 2^32: bytes before next_ were delivered already (a retransmission
  // or an overlap); skip them.
  auto behind = static_cast<int32_t>(*next_ - seq);
  if (behind > 0) {
    if (static_cast<size_t>(behind) >= payload.size()) return;
    payload = payload.subspan(static_cast<size_t>(behind));
  }
  sink(payload);
  delivered_ += payload.size();
  *next_ += static_cast<uint32_t>(payload.size());
}

void TcpStream::on_data(uint32_t seq, std::span<const uint8_t> payload, const Sink& sink) {
  if (payload.empty()) return;
  if (!next_) next_ = seq;  // the capture began after the SYN
  if (static_cast<int32_t>(seq - *next_) > 0) {
    // Early: wait for the gap to fill, within bounds.
    auto [it, inserted] = waiting_.try_emplace(seq);
    if (!inserted && it->second.size() >= payload.size()) return;  // a retransmission of what waits
    if (waiting_.size() > kMaxWaitingSegments || waiting_bytes_ + payload.size() > kMaxWaitingBytes) {
      if (inserted) waiting_.erase(it);
      dropped_ += payload.size();
      return;
    }
    waiting_bytes_ += payload.size() - it->second.size();
    it->second.assign(payload.begin(), payload.end());
    return;
  }
  deliver(seq, payload, sink);
  // Whatever waited and now starts at or before the new end goes next.
  for (bool progressed = true; progressed && !waiting_.empty();) {
    progressed = false;
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      if (static_cast<int32_t>(it->first - *next_) > 0) continue;
      auto segment = std::move(it->second);
      waiting_bytes_ -= segment.size();
      uint32_t at = it->first;
      waiting_.erase(it);
      deliver(at, segment, sink);
      progressed = true;
      break;
    }
  }
}

}  // namespace mw::pcap
