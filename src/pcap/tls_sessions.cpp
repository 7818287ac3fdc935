#include "pcap/tls_sessions.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace mw::pcap {

namespace hs = fingerprint::handshake_type;

void DirectionFacts::add(const net::IpPacket& ip, size_t payload) {
  if (ttl_runs.empty() || ttl_runs.back().ttl != ip.ttl) {
    if (ttl_runs.size() < kTtlRunsKept) ttl_runs.push_back({ip.ttl, 0, packets});
  }
  if (!ttl_runs.empty() && ttl_runs.back().ttl == ip.ttl) ++ttl_runs.back().packets;
  if (ip.family == AF_INET && ip_ids.size() < kIpIdsKept) ip_ids.push_back(ip.id);
  ++packets;
  payload_bytes += payload;
}

struct TlsSessionTable::Connection {
  struct Side {
    net::Endpoint endpoint;
    TcpStream tcp;
    fingerprint::HandshakeStream handshake;
    bool done = false;  // nothing more of interest comes in clear
    bool syn = false, syn_ack = false, fin = false;
    DirectionFacts facts;
    std::optional<fingerprint::ClientHello> client_hello;
    std::optional<fingerprint::ServerHello> server_hello;
    std::vector<std::vector<uint8_t>> chain;
  };
  uint64_t stream = 0;
  Side side[2];  // side[0] sent the first packet seen
  Clock::time_point first, last;
  bool rst = false;
  std::vector<std::string> problems;

  void read_messages(Side& s) {
    while (auto m = s.handshake.next()) {
      switch (m->type) {
        case hs::kClientHello:
          if (!s.client_hello) {
            auto h = fingerprint::parse_client_hello(m->body, m->record_version);
            if (h) s.client_hello = std::move(*h);
            else problems.push_back(h.error());
          }
          s.done = true;  // the client's next messages say nothing about it
          break;
        case hs::kServerHello:
          if (!s.server_hello) {
            auto h = fingerprint::parse_server_hello(m->body, m->record_version);
            if (h) {
              // TLS 1.3: everything after the ServerHello is encrypted.
              if (h->negotiated_version() >= 0x0304 && !h->hello_retry_request) s.done = true;
              s.server_hello = std::move(*h);
            } else {
              problems.push_back(h.error());
            }
          }
          break;
        case hs::kCertificate:
          if (s.chain.empty()) {
            auto list = fingerprint::parse_certificate_list(m->body);
            if (list) s.chain = std::move(*list);
            else problems.push_back(list.error());
          }
          break;
        case hs::kServerHelloDone:
          s.done = true;
          break;
        default:
          break;
      }
    }
    if (s.handshake.state() != fingerprint::HandshakeStream::State::reading) s.done = true;
  }

  bool is_tls() const {
    for (const auto& s : side)
      if (s.client_hello || s.server_hello) return true;
    return false;
  }

  // Which side is the client: the one that sent a bare SYN, else the one
  // that sent a ClientHello, else the one the other answered with SYN-ACK.
  std::optional<int> client_index() const {
    for (int i = 0; i < 2; ++i)
      if (side[i].syn) return i;
    for (int i = 0; i < 2; ++i)
      if (side[i].client_hello) return i;
    for (int i = 0; i < 2; ++i)
      if (side[i].server_hello || side[i].syn_ack) return 1 - i;
    return std::nullopt;
  }

  TlsSession take() {
    TlsSession s;
    auto known = client_index();
    int c = known.value_or(0);
    Side& client = side[c];
    Side& server = side[1 - c];
    s.stream = stream;
    s.client = client.endpoint;
    s.server = server.endpoint;
    s.client_known = known.has_value();
    s.saw_syn = client.syn;
    s.saw_fin = client.fin || server.fin;
    s.saw_rst = rst;
    s.first_seen = first;
    s.last_seen = last;
    s.client_hello = std::move(client.client_hello);
    s.server_hello = std::move(server.server_hello);
    s.chain = std::move(server.chain);
    s.problems = std::move(problems);
    s.client_state = to_string(client.handshake.state());
    s.server_state = to_string(server.handshake.state());
    for (Side* x : {&client, &server})
      if (!x->handshake.reason().empty())
        s.problems.push_back(fmt::format("{}: {}", x == &client ? "client" : "server", x->handshake.reason()));
    s.server_alert = server.handshake.alert();
    s.client_preamble = client.handshake.preamble();
    s.server_preamble = server.handshake.preamble();
    for (Side* x : {&client, &server})
      if (x->tcp.dropped() > 0)
        s.problems.push_back(fmt::format("{}: {} bytes after a gap that never filled", x == &client ? "client" : "server",
                                         x->tcp.dropped()));
    s.from_client = std::move(client.facts);
    s.from_server = std::move(server.facts);
    return s;
  }
};

size_t TlsSessionTable::KeyHash::operator()(const Key& k) const {
  return net::hash_flow(k.a, k.b, k.a_port, k.b_port);
}

TlsSessionTable::TlsSessionTable(Emit emit, size_t max_open) : emit_(std::move(emit)), max_open_(max_open) {}
TlsSessionTable::~TlsSessionTable() = default;

// Called once per connection, which its caller then erases.
void TlsSessionTable::close(Connection& c) {
  if (c.is_tls()) {
    ++stats_.tls;
    emit_(c.take());
  } else {
    ++stats_.not_tls;
  }
}

void TlsSessionTable::evict_some() {
  // Full of live connections: close the least recently active half.
  std::vector<std::pair<Clock::time_point, Key>> by_age;
  for (const auto& [k, c] : open_) by_age.push_back({c->last, k});
  std::sort(by_age.begin(), by_age.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (size_t i = 0; i < by_age.size() / 2; ++i) {
    auto it = open_.find(by_age[i].second);
    close(*it->second);
    open_.erase(it);
    ++stats_.evicted;
  }
}

void TlsSessionTable::on_packet(Clock::time_point when, const net::IpPacket& ip, const net::TcpSegment& tcp) {
  ++stats_.packets;
  net::Endpoint src{ip.src, tcp.src_port}, dst{ip.dst, tcp.dst_port};
  bool src_first = std::tie(src.ip.bytes, src.port) < std::tie(dst.ip.bytes, dst.port);
  Key key = src_first ? Key{src.ip, dst.ip, src.port, dst.port} : Key{dst.ip, src.ip, dst.port, src.port};
  bool bare_syn = tcp.has(net::TcpSegment::kSyn) && !tcp.has(net::TcpSegment::kAck);
  auto it = open_.find(key);
  if (it == open_.end() && !closed_.empty()) {
    if (auto done = closed_.find(key); done != closed_.end()) {
      if (!bare_syn) return;  // a straggler of a finished connection
      closed_.erase(done);
    }
  }
  if (it == open_.end()) {
    if (open_.size() >= max_open_) evict_some();
    auto c = std::make_unique<Connection>();
    c->stream = stats_.connections++;
    c->side[0].endpoint = src;
    c->side[1].endpoint = dst;
    c->first = when;
    it = open_.emplace(key, std::move(c)).first;
  }
  Connection& c = *it->second;
  c.last = when;
  Connection::Side& from = c.side[c.side[0].endpoint == src ? 0 : 1];
  from.facts.add(ip, tcp.payload.size());
  if (tcp.has(net::TcpSegment::kSyn)) {
    (tcp.has(net::TcpSegment::kAck) ? from.syn_ack : from.syn) = true;
    from.tcp.on_syn(tcp.seq);
  }
  if (!tcp.payload.empty() && !from.done) {
    from.tcp.on_data(tcp.seq, tcp.payload, [&](std::span<const uint8_t> bytes) {
      if (from.done) return;
      from.handshake.feed(bytes);
      c.read_messages(from);
    });
  }
  if (tcp.has(net::TcpSegment::kFin)) from.fin = true;
  if (tcp.has(net::TcpSegment::kRst)) c.rst = true;
  if (c.rst || (c.side[0].fin && c.side[1].fin)) {
    close(c);
    open_.erase(it);
    if (closed_.size() >= max_open_) closed_.clear();
    closed_.insert(key);
  }
}

void TlsSessionTable::finish() {
  std::vector<Connection*> live;
  for (auto& [k, c] : open_) live.push_back(c.get());
  std::sort(live.begin(), live.end(), [](const Connection* a, const Connection* b) { return a->stream < b->stream; });
  for (Connection* c : live) close(*c);
  open_.clear();
  closed_.clear();
}

}  // namespace mw::pcap
