#include "pcap/quic_sessions.hpp"

#include <tuple>

namespace mw::pcap {

struct QuicSessionTable::Conversation {
  uint64_t stream = 0;
  net::Endpoint first_sender, other;
  Clock::time_point first, last;
  // Only once a datagram looked like QUIC: most UDP in a capture is not.
  struct Quic {
    std::optional<net::Endpoint> client;  // the sender of the first client Initial that decrypted
    quic::InitialReader reader;
    DirectionFacts from_client, from_server;
    std::vector<std::string> problems;
  };
  std::unique_ptr<Quic> quic;
};

QuicSessionTable::QuicSessionTable(Emit emit, size_t max_open) : emit_(std::move(emit)), max_open_(max_open) {}
QuicSessionTable::~QuicSessionTable() = default;

size_t QuicSessionTable::KeyHash::operator()(const Key& k) const {
  return net::hash_flow(k.a, k.b, k.a_port, k.b_port);
}

void QuicSessionTable::on_datagram(Clock::time_point when, const net::IpPacket& ip, const net::UdpDatagram& udp) {
  ++stats_.datagrams;
  net::Endpoint src{ip.src, udp.src_port}, dst{ip.dst, udp.dst_port};
  bool src_first = std::tie(src.ip.bytes, src.port) < std::tie(dst.ip.bytes, dst.port);
  Key key = src_first ? Key{src.ip, dst.ip, src.port, dst.port} : Key{dst.ip, src.ip, dst.port, src.port};
  auto it = open_.find(key);
  if (it == open_.end()) {
    if (open_.size() >= max_open_) {  // the oldest half goes (QUIC ones emitted as they stand)
      std::vector<Key> old;
      for (auto& [k, c] : open_)
        if (old.size() < open_.size() / 2) old.push_back(k);
      for (const auto& k : old) {
        if (open_[k]->quic) emit(*open_[k]);
        open_.erase(k);
        ++stats_.evicted;
      }
    }
    auto c = std::make_unique<Conversation>();
    c->stream = stats_.conversations++;
    c->first_sender = src;
    c->other = dst;
    c->first = when;
    it = open_.emplace(key, std::move(c)).first;
  }
  Conversation& c = *it->second;
  c.last = when;
  auto p = udp.payload;
  // A QUIC long header: form and fixed bits set, a version other than 0.
  bool long_header = p.size() >= 7 && (p[0] & 0xc0) == 0xc0 && (p[1] | p[2] | p[3] | p[4]) != 0;
  if (!c.quic && !long_header) return;
  if (!c.quic) {
    c.quic = std::make_unique<Conversation::Quic>();
    ++stats_.quic;
  }
  auto& q = *c.quic;
  if (!q.client && long_header && !q.reader.done()) {
    size_t initials = q.reader.initials();
    (void)q.reader.add(p);  // a datagram that is not QUIC after all costs nothing
    if (q.reader.initials() > initials) q.client = src;
  } else if (q.client && src == *q.client && !q.reader.done() && long_header) {
    if (auto ok = q.reader.add(p); !ok && q.problems.size() < 8) q.problems.push_back(ok.error());
  }
  bool from_client = q.client ? src == *q.client : src == c.first_sender;
  (from_client ? q.from_client : q.from_server).add(ip, p.size());
}

void QuicSessionTable::emit(Conversation& c) {
  auto& q = *c.quic;
  if (!q.client) return;  // QUIC-looking datagrams, but no client Initial that decrypted
  TlsSession s;
  s.transport = 'q';
  s.stream = c.stream;
  s.client = *q.client;
  s.server = *q.client == c.first_sender ? c.other : c.first_sender;
  s.client_known = true;
  s.first_seen = c.first;
  s.last_seen = c.last;
  s.client_hello = q.reader.hello();
  s.problems = q.problems;
  for (const auto& p : q.reader.problems())
    if (s.problems.size() < 16) s.problems.push_back(p);
  if (!q.reader.error().empty()) s.problems.push_back(q.reader.error());
  else if (!q.reader.hello()) s.problems.push_back("the ClientHello's CRYPTO data never came whole");
  s.client_state = q.reader.hello() ? "hello" : "incomplete";
  s.from_client = q.from_client;
  s.from_server = q.from_server;
  emit_(std::move(s));
}

void QuicSessionTable::finish() {
  // In order of first appearance, as udp.stream numbers them.
  std::vector<Conversation*> order;
  for (auto& [k, c] : open_)
    if (c->quic) order.push_back(c.get());
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->stream < b->stream; });
  for (auto* c : order) emit(*c);
  open_.clear();
}

}  // namespace mw::pcap
