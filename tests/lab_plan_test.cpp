// The lab's configuration and topology plan, and the device's view of TCP
// flows: no root needed.
#include "lab/flow_table.hpp"
#include "lab/plan.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>

using namespace mw::lab;

namespace {

std::string via(const LabPlan& p, const std::string& ns, const std::string& dest) {
  for (const auto& r : p.routes)
    if (r.ns == ns && r.destination == dest) return r.via;
  return "<none>";
}

const PrefixConfig& prefix(const LabPlan& p, const std::string& name) {
  for (const auto& s : p.servers)
    if (s.prefix.name == name) return s.prefix;
  throw std::runtime_error("no prefix " + name);
}

}  // namespace

TEST(LabConfig, DefaultParsesWithTheReportsFigures) {
  auto c = default_lab_config();
  EXPECT_EQ(c.name, "lab");
  EXPECT_EQ(c.routers, 6);
  EXPECT_EQ(c.device_after, 4);
  EXPECT_EQ(c.device.triggers.size(), 37u);
  EXPECT_EQ(c.forgery.validity_shift_hours, -6);
  EXPECT_EQ(c.forgery.rsa_exponent, 3u);
  EXPECT_EQ(c.forgery.serial_low_bits_replaced, 33);
  int servers = 0;
  for (const auto& p : c.prefixes) servers += p.servers;
  EXPECT_GE(servers, 300);
}

TEST(LabConfig, RejectsBadConfigurationsWithReasons) {
  auto bad = [](const std::string& toml) {
    auto c = parse_lab_config(toml, "t.toml");
    EXPECT_FALSE(c) << toml;
    return c ? std::string() : c.error();
  };
  const std::string vantage = "[[vantages]]\nname = \"outside\"\nattach = 1\n";
  auto with_prefix = [&](const std::string& p) { return vantage + "[[prefixes]]\n" + p; };
  EXPECT_NE(bad(with_prefix("name=\"x\"\ncidr=\"8.8.8.0/24\"\nservers=3\n")).find("not a private"), std::string::npos);
  EXPECT_NE(bad(with_prefix("name=\"x\"\ncidr=\"10.1.0.0/30\"\nservers=9\n")).find("servers"), std::string::npos);
  EXPECT_NE(bad("name = \"Bad-Name\"\n" + with_prefix("name=\"x\"\ncidr=\"10.1.0.0/24\"\nservers=3\n")).find("name"),
            std::string::npos);
  EXPECT_NE(bad(with_prefix("name=\"a\"\ncidr=\"10.1.0.0/16\"\nservers=3\n[[prefixes]]\nname=\"b\"\ncidr=\"10.1.2.0/24\"\nservers=3\n"))
                .find("overlap"),
            std::string::npos);
  EXPECT_NE(bad(with_prefix("name=\"x\"\ncidr=\"10.1.0.0/24\"\nservers=\"many\"\n")).find("t.toml"), std::string::npos);
  EXPECT_NE(bad("routers = [").find("t.toml"), std::string::npos);
  // Wrong types name the key and its line.
  EXPECT_NE(bad(with_prefix("name=\"x\"\ncidr=\"10.1.0.0/24\"\nservers=\"many\"\n")).find("servers must be an integer (line 7)"),
            std::string::npos);
  EXPECT_NE(bad("routers = 2.5\n").find("routers must be an integer (line 1)"), std::string::npos);
  EXPECT_NE(bad("silent_routers = [1, \"two\"]\n").find("silent_routers[1] must be an integer"), std::string::npos);
  EXPECT_NE(bad("device = 3\n").find("device must be a table"), std::string::npos);
  EXPECT_NE(bad(vantage + "[[prefixes]]\ncidr=\"10.1.0.0/24\"\n").find("prefixes[0]: name is missing"), std::string::npos);
  // Unterminated strings at the end of the file (toml11 read past its buffer on these).
  EXPECT_NE(bad("name = 'lab").find("t.toml: line 1"), std::string::npos);
  EXPECT_NE(bad("name = \"\"\"lab").find("t.toml: line 1"), std::string::npos);
  // Table headers without a key broke toml++ 3.3's own preconditions (found by fuzz_lab_config).
  for (const char* header : {"[=", "[&", "[[=", "[[[1]]]", "name = \"x\"\n[ =\n"})
    EXPECT_NE(bad(header).find("t.toml"), std::string::npos) << header;
  EXPECT_NE(bad("name = \"lab\"\n\xe2\x80\x83= 1\n").find("t.toml: line 2: byte 0xE2: a lab file is ASCII text"),
            std::string::npos);
  EXPECT_NE(bad("device_after = 9\n" + with_prefix("name=\"x\"\ncidr=\"10.1.0.0/24\"\nservers=3\n")).find("device_after"),
            std::string::npos);
}

TEST(LabPlan, NamesAreOursAndShort) {
  auto p = plan_lab(default_lab_config());
  std::set<std::string> names;
  for (const auto& ns : p.all_namespaces()) {
    EXPECT_EQ(ns.rfind("mwlab-", 0), 0u) << ns;
    names.insert(ns);
  }
  EXPECT_EQ(names.size(), p.all_namespaces().size());
  for (const auto& l : p.links)
    for (const auto* i : {&l.a, &l.b}) {
      EXPECT_EQ(i->name.rfind("mw", 0), 0u);
      EXPECT_LE(i->name.size(), 15u) << i->name;  // IFNAMSIZ
    }
}

TEST(LabPlan, RoutesSendDeviceTrafficThroughTheDeviceAndTheRestOverTheBypass) {
  auto p = plan_lab(default_lab_config());
  // r4 -> core (at r6, via device): the device's address on r4's side.
  EXPECT_EQ(via(p, "mwlab-r4", "10.70.0.0/24"), "10.59.1.2");
  // r5 -> metro (at r3, via device): the device's address on r5's side.
  EXPECT_EQ(via(p, "mwlab-r5", "10.71.0.0/24"), "10.59.2.1");
  // r5 -> edge (at r2, bypass): r4 directly.
  EXPECT_EQ(via(p, "mwlab-r5", "10.72.0.0/23"), "10.60.4.1");
  // The vantages' own subnets always come back through the device.
  EXPECT_EQ(via(p, "mwlab-r5", "10.61.0.0/24"), "10.59.2.1");
  EXPECT_EQ(via(p, "mwlab-dev", "10.70.0.0/24"), "10.59.2.2");
  EXPECT_EQ(via(p, "mwlab-dev", "10.71.0.0/24"), "10.59.1.1");
  EXPECT_EQ(via(p, "mwlab-score", "default"), "10.61.2.1");
}

TEST(LabPlan, WhichPrefixesAreBehindTheDeviceFromWhere) {
  auto p = plan_lab(default_lab_config());
  EXPECT_TRUE(p.crosses_device("outside", prefix(p, "core")));
  EXPECT_FALSE(p.crosses_device("outside", prefix(p, "metro")));
  EXPECT_FALSE(p.crosses_device("outside", prefix(p, "edge")));
  EXPECT_FALSE(p.crosses_device("inside", prefix(p, "core")));
  EXPECT_TRUE(p.crosses_device("inside", prefix(p, "metro")));
  EXPECT_FALSE(p.crosses_device("inside", prefix(p, "edge")));
}

// What the device remembers of a connection's handshake, in the orders a
// loaded device sees packets.
TEST(FlowTable, ASynSentAgainAfterItsSynAckKeepsTheFlowTheDeviceSaw) {
  FlowTable flows;
  FlowKey key{0x0a3d0102, 0x0a470011, 40000, 443};
  TcpOptions client{1460, 7, true}, server{1400, 9, true};
  EXPECT_TRUE(flows.client_syn(key, 1000, client));
  EXPECT_EQ(flows.established(key), nullptr);  // no SYN-ACK yet: data would pass unseen
  flows.server_syn_ack(key, server);
  // The device was slow: the client's SYN came again behind the SYN-ACK.
  EXPECT_FALSE(flows.client_syn(key, 1000, client));
  Flow* flow = flows.established(key);
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->server.mss, 1400);
  EXPECT_EQ(flow->server.wscale, 9);
  EXPECT_EQ(flow->client.wscale, 7);
  EXPECT_EQ(flow->state, Flow::State::tracking);
}

TEST(FlowTable, ANewConnectionOnTheSamePortStartsOver) {
  FlowTable flows;
  FlowKey key{0x0a3d0102, 0x0a470011, 40000, 443};
  flows.client_syn(key, 1000, {});
  flows.server_syn_ack(key, {});
  flows.established(key)->state = Flow::State::hijacked;
  EXPECT_TRUE(flows.client_syn(key, 777777, {}));  // another initial sequence number
  EXPECT_EQ(flows.established(key), nullptr);
  flows.server_syn_ack(key, {});
  EXPECT_EQ(flows.established(key)->state, Flow::State::tracking);
}

TEST(FlowTable, SynAcksAndDataOfUnknownFlowsAreIgnored) {
  FlowTable flows;
  FlowKey key{1, 2, 3, 443};
  flows.server_syn_ack(key, {});
  EXPECT_EQ(flows.established(key), nullptr);
  EXPECT_EQ(flows.size(), 0u);
}

TEST(FlowTable, PastItsLimitIdleFlowsAreForgottenButNotTheNewOne) {
  FlowTable flows(2, std::chrono::seconds(0));
  flows.client_syn({1, 2, 1, 443}, 1, {});
  flows.client_syn({1, 2, 2, 443}, 2, {});
  EXPECT_EQ(flows.size(), 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  flows.client_syn({1, 2, 9, 443}, 9, {});  // the third: the two idle ones go
  EXPECT_EQ(flows.size(), 1u);
  flows.server_syn_ack({1, 2, 9, 443}, {});
  EXPECT_NE(flows.established({1, 2, 9, 443}), nullptr);
}

TEST(FlowTable, TcpOptionsAreReadAndAMalformedOneEndsTheList) {
  const uint8_t syn[] = {2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0};  // MSS 1460, NOP, wscale 7, SACK-permitted, EOL
  auto o = parse_tcp_options(syn, sizeof syn);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_TRUE(o.sack);
  const uint8_t bad[] = {3, 3, 5, 2, 9, 0x05};  // wscale 5, then an MSS running past the end
  o = parse_tcp_options(bad, sizeof bad);
  EXPECT_EQ(o.wscale, 5);
  EXPECT_EQ(o.mss, 536);
  const uint8_t zero_length[] = {8, 0, 2, 4, 0x05, 0xb4};
  EXPECT_EQ(parse_tcp_options(zero_length, sizeof zero_length).mss, 536);
}
