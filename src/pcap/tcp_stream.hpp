// One direction of a TCP connection put back in order: retransmitted and
// overlapping bytes are delivered once, segments that arrive early wait
// (bounded) until the gap before them fills. Sequence numbers wrap mod 2^32.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace mw::pcap {

class TcpStream {
 public:
  using Sink = std::function<void(std::span<const uint8_t>)>;

  // The SYN fixes where the data starts (its sequence number + 1).
  void on_syn(uint32_t seq);
  // A segment's payload; in-order bytes go to `sink` at once, later ones wait.
  void on_data(uint32_t seq, std::span<const uint8_t> payload, const Sink& sink);
  // Bytes delivered, and bytes dropped because the out-of-order store was full
  // (a gap that never filled, or a capture that missed packets).
  uint64_t delivered() const { return delivered_; }
  uint64_t dropped() const { return dropped_; }
  bool has_gap() const { return !waiting_.empty(); }

  static constexpr size_t kMaxWaitingBytes = 1 << 20;
  static constexpr size_t kMaxWaitingSegments = 512;

 private:
  void deliver(uint32_t seq, std::span<const uint8_t> payload, const Sink& sink);

  std::optional<uint32_t> next_;
  std::map<uint32_t, std::vector<uint8_t>> waiting_;  // early segments by sequence number
  size_t waiting_bytes_ = 0;
  uint64_t delivered_ = 0, dropped_ = 0;
};

}  // namespace mw::pcap
