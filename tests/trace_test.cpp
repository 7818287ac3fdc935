// The trace's pure parts on crafted packets and hand-built results: packet
// parsing, ICMP-to-probe matching, the run judgement, settling over runs,
// the record and the aggregate.
#include "net/packet.hpp"
#include "support/support.hpp"
#include "trace/probe_match.hpp"
#include "trace/trace_result.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>

using namespace mw;
using trace::Outcome;

namespace {

net::IpAddress ip(const char* text) { return *net::IpAddress::parse(text); }

void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v >> 16));
  put16(b, at + 2, static_cast<uint16_t>(v));
}

struct Tcp4 {
  const char* src;
  const char* dst;
  uint16_t sport, dport;
  uint32_t seq;
  uint8_t ttl = 64;
  uint16_t id = 1;
  uint8_t tos = 0;
  size_t payload = 0;
  uint8_t flags = 0x18;
};

std::vector<uint8_t> tcp4(const Tcp4& t) {
  std::vector<uint8_t> b(40 + t.payload, 0);
  b[0] = 0x45;
  b[1] = t.tos;
  put16(b, 2, static_cast<uint16_t>(b.size()));
  put16(b, 4, t.id);
  b[8] = t.ttl;
  b[9] = IPPROTO_TCP;
  auto s = ip(t.src), d = ip(t.dst);
  std::copy(s.bytes.begin(), s.bytes.begin() + 4, b.begin() + 12);
  std::copy(d.bytes.begin(), d.bytes.begin() + 4, b.begin() + 16);
  put16(b, 20, t.sport);
  put16(b, 22, t.dport);
  put32(b, 24, t.seq);
  b[32] = 0x50;
  b[33] = t.flags;
  return b;
}

// An ICMP time-exceeded from `router` to `to`, quoting the first `quote`
// bytes of `dropped` (28: the RFC 792 minimum; Linux quotes up to 576).
std::vector<uint8_t> time_exceeded(const char* router, const char* to, std::vector<uint8_t> dropped, size_t quote = 576,
                                   uint8_t quoted_ttl = 1) {
  dropped[8] = quoted_ttl;
  dropped.resize(std::min(dropped.size(), quote));
  std::vector<uint8_t> b(28, 0);
  b[0] = 0x45;
  put16(b, 2, static_cast<uint16_t>(28 + dropped.size()));
  b[8] = 60;
  b[9] = IPPROTO_ICMP;
  auto s = ip(router), d = ip(to);
  std::copy(s.bytes.begin(), s.bytes.begin() + 4, b.begin() + 12);
  std::copy(d.bytes.begin(), d.bytes.begin() + 4, b.begin() + 16);
  b[20] = 11;  // time exceeded, code 0: TTL expired in transit
  b.insert(b.end(), dropped.begin(), dropped.end());
  return b;
}

net::IcmpError icmp_of(const std::vector<uint8_t>& packet) {
  auto outer = net::parse_ip(packet);
  EXPECT_TRUE(outer);
  auto e = net::parse_icmp_error(*outer);
  EXPECT_TRUE(e);
  return *e;
}

// A probe that sent a 517-byte ClientHello at sequence `seq` on its flow.
void sent(trace::ProbeMatcher& m, trace::ProbeId id, const Tcp4& t) {
  m.add(id, {ip(t.src), ip(t.dst), t.sport, t.dport});
  auto bytes = tcp4(t);
  auto p = net::parse_ip(bytes);
  auto seg = net::parse_tcp(*p);
  m.note_sent(id, *p, *seg);
}

}  // namespace

TEST(Packet, ParsesIpv4TcpAndTrimsPadding) {
  auto b = tcp4({"192.0.2.1", "198.51.100.7", 40000, 443, 1000, 5, 77, 0, 10});
  b.resize(b.size() + 6, 0xee);  // Ethernet padding after the IP packet
  auto p = net::parse_ip(b);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->src.to_string(), "192.0.2.1");
  EXPECT_EQ(p->ttl, 5);
  EXPECT_EQ(p->id, 77u);
  auto t = net::parse_tcp(*p);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->dst_port, 443);
  EXPECT_EQ(t->seq, 1000u);
  EXPECT_EQ(t->payload.size(), 10u);
}

TEST(Packet, RejectsShortAndLyingHeaders) {
  auto b = tcp4({"192.0.2.1", "198.51.100.7", 1, 2, 3});
  for (size_t n = 0; n < 40; ++n) {
    auto p = net::parse_ip({b.data(), n});
    if (p) {
      EXPECT_FALSE(net::parse_tcp(*p)) << n;  // the TCP header is cut
    }
  }
  auto lying = b;
  lying[0] = 0x4f;  // IHL 60 bytes, more than there is
  EXPECT_FALSE(net::parse_ip({lying.data(), 40}));
  lying = b;
  lying[32] = 0xf0;  // TCP data offset 60
  auto p = net::parse_ip(lying);
  ASSERT_TRUE(p);
  EXPECT_FALSE(net::parse_tcp(*p));
}

TEST(Packet, LinkLayersCarryTheSameIpPacket) {
  auto ipb = tcp4({"192.0.2.1", "198.51.100.7", 1, 2, 3});
  std::vector<uint8_t> eth(14, 0), vlan(18, 0), sll(16, 0);
  eth[12] = 0x08;
  vlan[12] = 0x81;
  vlan[16] = 0x08;
  sll[0] = 0;
  sll[1] = 4;  // outgoing
  sll[14] = 0x08;
  for (auto* f : {&eth, &vlan, &sll}) f->insert(f->end(), ipb.begin(), ipb.end());
  EXPECT_EQ(net::ip_from_frame(net::kLinkEthernet, eth)->size(), ipb.size());
  EXPECT_EQ(net::ip_from_frame(net::kLinkEthernet, vlan)->size(), ipb.size());
  EXPECT_EQ(net::ip_from_frame(net::kLinkLinuxSll, sll)->size(), ipb.size());
  EXPECT_TRUE(net::frame_is_outgoing(net::kLinkLinuxSll, sll));
  EXPECT_FALSE(net::ip_from_frame(net::kLinkLinuxSll, {sll.data(), 10}));
  EXPECT_FALSE(net::ip_from_frame(999, eth));
}

TEST(ProbeMatch, EachIcmpGoesToTheProbeItQuotesNotTheLastOneSent) {
  trace::ProbeMatcher m;
  // Two probes to the same server through the same router, in flight together.
  Tcp4 a{"10.61.0.2", "10.70.0.5", 40001, 443, 111111, 4, 10, 0, 517};
  Tcp4 b{"10.61.0.2", "10.70.0.5", 40002, 443, 222222, 4, 20, 0, 517};
  sent(m, 1, a);
  sent(m, 2, b);
  auto for_a = m.attribute(icmp_of(time_exceeded("10.60.3.2", "10.61.0.2", tcp4(a))));
  auto for_b = m.attribute(icmp_of(time_exceeded("10.60.3.2", "10.61.0.2", tcp4(b), 28)));  // minimal quote
  ASSERT_TRUE(for_a && for_b);
  EXPECT_EQ(for_a->probe, 1u);
  EXPECT_EQ(for_b->probe, 2u);
  EXPECT_TRUE(for_a->changes.empty());
  EXPECT_TRUE(for_b->changes.empty());
}

TEST(ProbeMatch, ARetransmissionsIcmpStillMatches) {
  trace::ProbeMatcher m;
  Tcp4 a{"10.61.0.2", "10.70.0.5", 40001, 443, 5000, 4, 10, 0, 517};
  sent(m, 1, a);
  Tcp4 again = a;
  again.id = 11;  // a retransmission carries a new IP ID
  auto bytes = tcp4(again);
  auto p = net::parse_ip(bytes);
  m.note_sent(1, *p, *net::parse_tcp(*p));
  auto got = m.attribute(icmp_of(time_exceeded("10.60.3.2", "10.61.0.2", tcp4(again))));
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->changes.empty());
}

TEST(ProbeMatch, RewrittenFieldsAreReportedAndNatIsMatchedBySequence) {
  trace::ProbeMatcher m;
  Tcp4 a{"192.168.1.10", "203.0.113.9", 40001, 443, 0xfffffff0u, 6, 10, 0, 517};  // the range wraps
  sent(m, 1, a);
  // A NAT on the way changed the source address and port; DSCP remarked.
  Tcp4 natted = a;
  natted.src = "198.51.100.1";
  natted.sport = 61000;
  natted.tos = 0x20;
  auto got = m.attribute(icmp_of(time_exceeded("203.0.113.1", "198.51.100.1", tcp4(natted))));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->probe, 1u);
  EXPECT_TRUE(got->by_sequence);
  std::map<std::string, std::string> changed;
  for (const auto& c : got->changes) changed[c.field] = c.quoted;
  EXPECT_EQ(changed["src"], "198.51.100.1");
  EXPECT_EQ(changed["sport"], "61000");
  EXPECT_EQ(changed["tos"], "32");
  EXPECT_FALSE(changed.count("dst"));
  // A sequence number inside the ClientHello (a later segment of it) matches too.
  Tcp4 later = natted;
  later.seq = 0xfffffff0u + 100;
  EXPECT_TRUE(m.attribute(icmp_of(time_exceeded("203.0.113.1", "198.51.100.1", tcp4(later)))));
  // Same flow, a sequence number we never sent: matched, the change shown.
  Tcp4 odd = a;
  odd.seq = 0x10000000u;
  auto rewritten = m.attribute(icmp_of(time_exceeded("203.0.113.1", "192.168.1.10", tcp4(odd))));
  ASSERT_TRUE(rewritten);
  EXPECT_EQ(rewritten->changes.at(0).field, "seq");
}

TEST(ProbeMatch, UnknownFlowsAndFinishedProbesMatchNothing) {
  trace::ProbeMatcher m;
  Tcp4 a{"10.61.0.2", "10.70.0.5", 40001, 443, 5000, 4, 10, 0, 517};
  sent(m, 1, a);
  Tcp4 other{"10.61.0.2", "10.70.0.6", 40009, 443, 999999, 4};
  EXPECT_FALSE(m.attribute(icmp_of(time_exceeded("10.60.3.2", "10.61.0.2", tcp4(other)))));
  m.remove(1);
  EXPECT_EQ(m.size(), 0u);
  EXPECT_FALSE(m.attribute(icmp_of(time_exceeded("10.60.3.2", "10.61.0.2", tcp4(a)))));
}

TEST(ProbeMatch, IcmpThatQuotesTooLittleIsNotParsed) {
  auto e = icmp_of(time_exceeded("10.60.3.2", "10.61.0.2", tcp4({"10.61.0.2", "10.70.0.5", 1, 443, 5}), 24));
  EXPECT_FALSE(e.quoted_tcp);  // only 4 bytes of TCP: no sequence number
}

// ---- judgement ----

namespace {

struct Certs {
  certs::Authority real_ca = certs::make_root({{"CN", "Real Root"}});
  certs::Authority forger = certs::make_root({{"C", "KZ"}, {"CN", "Security Certificate"}});
  certs::ServedChain real = certs::make_leaf(real_ca, {"www.facebook.com"});
  certs::ServedChain forged;
  tls::TrustStore trust = tls::TrustStore::empty();
  Certs() {
    forged.key = certs::make_ec_p256_key();
    forged.leaf = certs::forge_like(real.leaf.get(), forged.key.get(), forger);
    trust.add(real_ca.cert.get());
  }
};

trace::ProbeResult hop(int ttl, const char* router) {
  trace::ProbeResult p;
  p.ttl = ttl;
  p.outcome = Outcome::time_exceeded;
  p.router = ip(router);
  p.rtt_ms = ttl;
  return p;
}

trace::ProbeResult answer(int ttl, const certs::ServedChain& chain, const Certs& c, const std::string& sni) {
  trace::ProbeResult p;
  p.ttl = ttl;
  p.outcome = Outcome::tls;
  p.tls = test::observed(chain, sni, c.trust);
  return p;
}

trace::ProbeResult other(int ttl, Outcome o) {
  trace::ProbeResult p;
  p.ttl = ttl;
  p.outcome = o;
  return p;
}

// Trigger forged from `k`, control answered at `server`, routers 10.0.0.<ttl>.
trace::Run run_with(const Certs& c, int k, int server) {
  trace::Run r;
  r.trigger.sni = "www.facebook.com";
  for (int t = 1; t < k; ++t) r.trigger.probes.push_back(hop(t, ("10.0.0." + std::to_string(t)).c_str()));
  for (int t = k; t <= server; ++t) r.trigger.probes.push_back(answer(t, c.forged, c, "www.facebook.com"));
  for (int t = 1; t < server; ++t) r.control.probes.push_back(hop(t, ("10.0.0." + std::to_string(t)).c_str()));
  r.control.probes.push_back(answer(server, c.real, c, ""));
  r.judgement = trace::judge_run(r.trigger, r.control);
  return r;
}

}  // namespace

TEST(TraceJudge, ForgedBeforeTheServerLocatesTheInjector) {
  Certs c;
  auto r = run_with(c, 5, 7);
  EXPECT_EQ(r.judgement.verdict, trace::Verdict::before_server);
  EXPECT_EQ(r.judgement.injector_hop, 5);
  EXPECT_EQ(r.judgement.server_hop, 7);
  EXPECT_TRUE(r.trigger.probes[4].forged);
  EXPECT_EQ(run_with(c, 7, 7).judgement.verdict, trace::Verdict::at_server);
}

TEST(TraceJudge, RealChainsAResetOrNothingAreNotAForgery) {
  Certs c;
  auto r = run_with(c, 5, 7);
  for (auto& p : r.trigger.probes)
    if (p.outcome == Outcome::tls) p = answer(p.ttl, c.real, c, "www.facebook.com");
  auto j = trace::judge_run(r.trigger, r.control);
  EXPECT_EQ(j.verdict, trace::Verdict::not_observed);
  EXPECT_FALSE(j.injector_hop);
  // A reset injected at hop 4, before the server: not a forgery, but said.
  r.trigger.probes.resize(3);
  r.trigger.probes.push_back(other(4, Outcome::rst));
  j = trace::judge_run(r.trigger, r.control);
  EXPECT_EQ(j.verdict, trace::Verdict::not_observed);
  EXPECT_NE(j.reasons.back().find("before the server"), std::string::npos);
  trace::SniTrace none, none2;
  none.probes.push_back(other(1, Outcome::silence));
  EXPECT_EQ(trace::judge_run(none, none2).verdict, trace::Verdict::unreachable);
}

TEST(TraceJudge, AnswersThatContradictEachOtherAreInconsistent) {
  Certs c;
  auto r = run_with(c, 5, 7);
  r.trigger.probes[5] = answer(6, c.real, c, "www.facebook.com");  // real at 6 after forged at 5
  EXPECT_EQ(trace::judge_run(r.trigger, r.control).verdict, trace::Verdict::inconsistent);
  auto beyond = run_with(c, 5, 7);
  beyond.control.probes.back().ttl = 4;  // the control ends before the forgery begins
  EXPECT_EQ(trace::judge_run(beyond.trigger, beyond.control).verdict, trace::Verdict::inconsistent);
}

TEST(TraceSettle, NeedsAgreeingRunsAndCallsDisagreementInconsistent) {
  Certs c;
  std::vector<trace::Run> runs{run_with(c, 5, 7)};
  EXPECT_TRUE(trace::settle(runs, 1, false));
  EXPECT_FALSE(trace::settle(runs, 2, false));  // one more run wanted
  runs.push_back(run_with(c, 4, 7));            // the path changed
  EXPECT_FALSE(trace::settle(runs, 2, false));
  auto final = trace::settle(runs, 2, true);
  ASSERT_TRUE(final);
  EXPECT_EQ(final->judgement.verdict, trace::Verdict::inconsistent);
  runs.push_back(run_with(c, 5, 7));
  auto agreed = trace::settle(runs, 2, false);
  ASSERT_TRUE(agreed);
  EXPECT_EQ(agreed->judgement.injector_hop, 5);
  EXPECT_EQ(agreed->agreeing, 2);
}

TEST(TraceRecord, NamesTheHopsOnEitherSideAndAggregates) {
  Certs c;
  trace::TargetTrace t;
  t.target = {ip("192.0.2.80"), 443};
  t.trigger_sni = "www.facebook.com";
  t.runs.push_back(run_with(c, 5, 7));
  t.settled = *trace::settle(t.runs, 1, true);
  auto j = trace::to_json(t);
  EXPECT_EQ(j["schema"], "mitmwatch.trace/1");
  EXPECT_EQ(j["verdict"], "before-server");
  EXPECT_EQ(j["injector_before"], "10.0.0.4");
  EXPECT_EQ(j["injector_after"], "10.0.0.5");  // from the control, which passed the injector
  EXPECT_EQ(j["hops_before_server"], 2);
  EXPECT_EQ(j["hops"].size(), 7u);
  EXPECT_EQ(j["hops"][6]["address"], "192.0.2.80");
  EXPECT_EQ(j["trigger"]["answer_ttl"], 5);
  EXPECT_EQ(j["trigger"]["forged"], true);
  EXPECT_EQ(j["control"]["forged"], false);

  trace::TraceSummary s;
  auto plain = nlohmann::json::parse(j.dump());
  for (int i = 0; i < 19; ++i) s.add(plain);
  auto other_pair = plain;
  other_pair["injector_before"] = "10.9.9.9";
  other_pair["server_hop"] = 9;
  s.add(other_pair);
  auto not_seen = plain;
  not_seen["verdict"] = "not-observed";
  s.add(not_seen);
  auto text = s.render();
  EXPECT_NE(text.find("trace: 21 targets"), std::string::npos) << text;
  EXPECT_NE(text.find("injected before the server: 20 of 20 located targets (100.0 %)"), std::string::npos) << text;
  EXPECT_NE(text.find("2: 19 (95.0 %)"), std::string::npos) << text;
  EXPECT_NE(text.find("10.0.0.4 -> 10.0.0.5: 19 (95.0 %)"), std::string::npos) << text;
  EXPECT_NE(text.find("10.9.9.9 -> 10.0.0.5: 1 (5.0 %)"), std::string::npos) << text;
}
