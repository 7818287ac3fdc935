// `mitmwatch trace` end to end on the lab, as root: every intercepted server
// from both vantages, a router that sends no ICMP, the device moved, the AS
// database and the packet capture. Skipped when not root.
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

using namespace mw;

namespace {

// Routers r1..r6; the device after `device_after`; router 2 sends no ICMP;
// the last of metro's servers is self-signed.
std::string lab_toml(const std::string& name, int device_after, int metro_servers) {
  return "name = \"" + name + "\"\nrouters = 6\ndevice_after = " + std::to_string(device_after) + R"(
silent_routers = [2]
[[vantages]]
name = "outside"
attach = 1
[[vantages]]
name = "inside"
attach = 5
[[prefixes]]
name = "core"
cidr = "10.70.0.0/24"
servers = 4
untrusted = 1
attach = 6
[[prefixes]]
name = "metro"
cidr = "10.71.0.0/24"
servers = )" + std::to_string(metro_servers) + R"(
untrusted = 1
attach = 3
[[prefixes]]
name = "edge"
cidr = "10.72.0.0/24"
servers = 3
untrusted = 0
attach = 2
via_device = false
)";
}

// The IPv4 addresses of router r<i> of lab `name`.
std::set<std::string> router_addresses(const std::string& name, int i) {
  std::set<std::string> out;
  FILE* p = popen(("ip -n mw" + name + "-r" + std::to_string(i) + " -4 -o addr show").c_str(), "r");
  if (!p) return out;
  char line[512];
  while (fgets(line, sizeof line, p)) {
    std::istringstream in(line);
    std::string word, prev;
    while (in >> word) {
      if (prev == "inet") out.insert(word.substr(0, word.find('/')));
      prev = word;
    }
  }
  pclose(p);
  return out;
}

struct Lab {
  std::string name;
  test::TempDir dir;
  bool up = false;
  std::string log;
  Lab(std::string n, int device_after, int metro_servers = 4) : name(std::move(n)) {
    test::write_file(dir.file("lab.toml"), lab_toml(name, device_after, metro_servers));
    auto r = test::run_mitmwatch({"lab", "up", "--config", dir.file("lab.toml")}, "", std::chrono::seconds(120));
    up = r.exit_code == 0;
    log = r.err;
  }
  ~Lab() { test::run_mitmwatch({"lab", "down", "--name", name}); }
  std::string ca() const { return "/run/mitmwatch-lab/" + name + "/public-root.pem"; }

  // Traces `targets` from `vantage`; the records by target address.
  std::map<std::string, nlohmann::json> trace(const std::string& vantage, const std::vector<std::string>& targets,
                                              const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"lab", "exec", "--name", name, vantage, "--", MW_BINARY, "trace", "--allow-private",
                                     "--ca-file", ca(), "--probe-timeout", "0.5", "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), targets.begin(), targets.end());
    auto r = test::run_mitmwatch(args, "", std::chrono::seconds(120));
    last_err = r.err;
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, nlohmann::json> out;
    for (auto& j : test::parse_lines(r.out)) out[j["target"].get<std::string>().substr(0, j["target"].get<std::string>().find(':'))] = j;
    return out;
  }
  std::string last_err;
};

class TraceLab : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
};

std::vector<std::string> servers(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// Hop k of the record lies on router `router` (or is "*" for a silent one).
void expect_hop(const nlohmann::json& rec, int ttl, const std::set<std::string>& router) {
  ASSERT_GE(rec["hops"].size(), static_cast<size_t>(ttl));
  std::string address = rec["hops"][ttl - 1]["address"];
  EXPECT_TRUE(router.count(address)) << "hop " << ttl << " is " << address << " in " << rec.dump();
}

}  // namespace

TEST_F(TraceLab, LocatesTheDeviceFromBothVantagesWithTheRightRoutersAndASilentHop) {
  Lab lab("v" + std::to_string(getpid() % 100000), 4);
  ASSERT_TRUE(lab.up) << lab.log;
  test::TempDir tmp;
  std::string mmdb = tmp.file("lab.mmdb");
  ASSERT_EQ(std::system(("perl " MW_SOURCE_DIR "/tests/lab/make_mmdb.pl " + mmdb).c_str()), 0);
  std::string pcap = tmp.file("trace.pcap");
  std::map<int, std::set<std::string>> r;
  for (int i = 1; i <= 6; ++i) r[i] = router_addresses(lab.name, i);

  // Outside (at r1): core behind r6 crosses the device between r4 and r5;
  // the three trusted core servers are intercepted, the self-signed one is left alone
  // (the device only forges for servers it can verify), edge goes over the bypass.
  auto targets = servers("10.70.0.", 4);
  for (auto& t : servers("10.72.0.", 3)) targets.push_back(t);
  auto out = lab.trace("outside", targets, {"--asn-db", mmdb, "--pcap", pcap});
  ASSERT_EQ(out.size(), 7u) << lab.last_err;
  for (int i = 1; i <= 3; ++i) {
    const auto& rec = out.at("10.70.0." + std::to_string(i));
    EXPECT_EQ(rec["verdict"], "before-server") << rec.dump();
    EXPECT_EQ(rec["injector_hop"], 5);
    EXPECT_EQ(rec["server_hop"], 7);  // six routers, then the server
    EXPECT_EQ(rec["hops_before_server"], 2);
    EXPECT_TRUE(r[4].count(rec["injector_before"].get<std::string>())) << rec["injector_before"];
    EXPECT_TRUE(r[5].count(rec["injector_after"].get<std::string>())) << rec["injector_after"];
    for (int hop : {1, 3, 4, 5, 6}) expect_hop(rec, hop, r[hop]);
    EXPECT_EQ(rec["hops"][1]["address"], "*");  // r2 is silent: tried again, still nothing
    EXPECT_EQ(rec["hops"][6]["address"], "10.70.0." + std::to_string(i));
    EXPECT_EQ(rec["trigger"]["answer_ttl"], 5);
    EXPECT_EQ(rec["trigger"]["forged"], true);
    EXPECT_EQ(rec["trigger"]["leaf"]["issuer"], "CN=Security Certificate,C=KZ");
    EXPECT_EQ(rec["control"]["answer_ttl"], 7);
    EXPECT_EQ(rec["control"]["forged"], false);
    // The silent hop was asked three times (two retries).
    int asked = 0;
    for (const auto& p : rec["control"]["probes"]) asked += p["ttl"] == 2;
    EXPECT_EQ(asked, 3);
    // The AS database names each hop.
    EXPECT_EQ(rec["hops"][3]["asn"], 64500);
    EXPECT_EQ(rec["hops"][3]["country"], "KZ");
    EXPECT_EQ(rec["hops"][6]["as_org"], "Lab Hosting");
  }
  EXPECT_EQ(out.at("10.70.0.4")["verdict"], "not-observed");  // self-signed: passed by the device
  EXPECT_EQ(out.at("10.70.0.4")["server_hop"], 7);
  for (int i = 1; i <= 3; ++i) {
    const auto& rec = out.at("10.72.0." + std::to_string(i));
    EXPECT_EQ(rec["verdict"], "not-observed") << rec.dump();
    EXPECT_EQ(rec["server_hop"], 3);  // r1, r2, server
    EXPECT_EQ(rec["injector_hop"], nullptr);
    EXPECT_EQ(rec["trigger"]["answer_ttl"], 3);
  }
  // The aggregate on stderr: the report's "between hops" line.
  EXPECT_NE(lab.last_err.find("injected before the server: 3 of 3 located targets (100.0 %)"), std::string::npos)
      << lab.last_err;

  // The capture holds the probes, the forged answers and the routers' ICMP.
  auto count = [&](const std::string& filter) {
    std::string cmd = "tcpdump -nn -r " + pcap + " '" + filter + "' 2>/dev/null | wc -l";
    FILE* p = popen(cmd.c_str(), "r");
    int n = 0;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
  };
  EXPECT_GT(count("icmp[icmptype] == icmp-timxceed"), 20);
  EXPECT_GT(count("tcp src port 443 and tcp[tcpflags] & tcp-syn != 0"), 20);
  EXPECT_GT(count("tcp dst port 443 and ip[8] == 5"), 3);  // ClientHellos sent with TTL 5

  // Inside (at r5): metro behind r3; the device sits between r5 and r4.
  auto in = lab.trace("inside", servers("10.71.0.", 4));
  ASSERT_EQ(in.size(), 4u) << lab.last_err;
  for (int i = 1; i <= 3; ++i) {
    const auto& rec = in.at("10.71.0." + std::to_string(i));
    EXPECT_EQ(rec["verdict"], "before-server") << rec.dump();
    EXPECT_EQ(rec["injector_hop"], 2);
    EXPECT_EQ(rec["server_hop"], 4);
    EXPECT_TRUE(r[5].count(rec["injector_before"].get<std::string>())) << rec.dump();
    EXPECT_TRUE(r[4].count(rec["injector_after"].get<std::string>())) << rec.dump();
    expect_hop(rec, 3, r[3]);
  }
  EXPECT_EQ(in.at("10.71.0.4")["verdict"], "not-observed");

  // Root only to open the capture and raw sockets: then nobody, no capability, and still a trace.
  auto as_nobody = test::run_mitmwatch({"lab", "exec", "--name", lab.name, "outside", "--", MW_BINARY, "trace",
                                        "--allow-private", "--ca-file", lab.ca(), "--probe-timeout", "0.5", "--user",
                                        "nobody", "10.70.0.1"},
                                       "", std::chrono::seconds(120));
  ASSERT_EQ(as_nobody.exit_code, 0) << as_nobody.err;
  EXPECT_NE(as_nobody.err.find("running as nobody (uid 65534), capabilities: none"), std::string::npos) << as_nobody.err;
  EXPECT_EQ(test::parse_lines(as_nobody.out).at(0)["injector_hop"], 5);
  auto as_root = test::run_mitmwatch({"lab", "exec", "--name", lab.name, "outside", "--", MW_BINARY, "trace",
                                      "--allow-private", "--user", "root", "10.70.0.1"});
  EXPECT_EQ(as_root.exit_code, 1);
  EXPECT_NE(as_root.err.find("--user root: that is root"), std::string::npos) << as_root.err;
}

TEST_F(TraceLab, TheDeviceMovedInTheConfigIsFoundWhereItMoved) {
  Lab lab("w" + std::to_string(getpid() % 100000), 2);
  ASSERT_TRUE(lab.up) << lab.log;
  std::map<int, std::set<std::string>> r;
  for (int i = 1; i <= 6; ++i) r[i] = router_addresses(lab.name, i);
  // Now between r2 and r3: core (behind r6) and metro (behind r3) from outside.
  auto out = lab.trace("outside", {"10.70.0.1", "10.70.0.2", "10.71.0.1"}, {"--runs", "2"});
  ASSERT_EQ(out.size(), 3u) << lab.last_err;
  for (const auto& [addr, rec] : out) {
    EXPECT_EQ(rec["verdict"], "before-server") << rec.dump();
    EXPECT_EQ(rec["injector_hop"], 3);
    EXPECT_EQ(rec["injector_before"], "*");  // r2, the hop before the device, is the silent one
    EXPECT_TRUE(r[3].count(rec["injector_after"].get<std::string>())) << rec.dump();
    EXPECT_EQ(rec["runs"], 2);
    EXPECT_EQ(rec["agreement"], 1.0);
  }
  EXPECT_EQ(out.at("10.70.0.1")["server_hop"], 7);
  EXPECT_EQ(out.at("10.71.0.1")["server_hop"], 4);
  // The summary counts a silent hop as "*".
  EXPECT_NE(lab.last_err.find("* -> "), std::string::npos) << lab.last_err;
}

// A device that falls behind (a loaded machine, here SIGSTOP) holds SYN-ACKs
// long enough for clients to send their SYN again. The device must still take
// those connections over: in CI a stalled device once forgot the SYN-ACK it
// had seen, let whole connections through, and the trace found no injector.
TEST_F(TraceLab, ADeviceThatStallsStillTakesOverConnectionsWhoseSynCameTwice) {
  Lab lab("y" + std::to_string(getpid() % 100000), 4, 24);
  ASSERT_TRUE(lab.up) << lab.log;
  std::ifstream ready("/run/mitmwatch-lab/" + lab.name + "/run/device.ready");
  pid_t device = 0;
  ASSERT_TRUE(ready >> device) << "no device pid";
  // The device first checks each server's own chain: done here, before the
  // stalls, as a study's scan does before its trace.
  std::vector<std::string> targets = servers("10.71.0.", 23);  // metro's trusted servers
  std::vector<std::string> scan{"lab", "exec", "--name", lab.name, "inside", "--", MW_BINARY, "scan",
                                "--allow-private", "--ca-file", lab.ca(), "--sni", "facebook.com", "-q"};
  scan.insert(scan.end(), targets.begin(), targets.end());
  auto scanned = test::run_mitmwatch(scan, "", std::chrono::seconds(120));
  ASSERT_EQ(scanned.exit_code, 0) << scanned.err;
  for (const auto& rec : test::parse_lines(scanned.out)) ASSERT_EQ(rec["verdict"], "intercepted") << rec.dump();
  std::atomic<bool> tracing{true};
  std::thread stall([&] {
    // Eight stalls of 1.2 s (a client sends its SYN again after 1 s), each
    // followed by as long running: the device keeps up between them even on
    // a loaded machine.
    for (int i = 0; i < 8 && tracing; ++i) {
      kill(device, SIGSTOP);
      std::this_thread::sleep_for(std::chrono::milliseconds(1200));
      kill(device, SIGCONT);
      std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    }
  });
  std::vector<std::string> args{"lab", "exec", "--name", lab.name, "inside", "--", MW_BINARY, "trace",
                                "--allow-private", "--ca-file", lab.ca(), "--connect-timeout", "15",
                                "--probe-timeout", "6", "-q"};
  args.insert(args.end(), targets.begin(), targets.end());
  auto r = test::run_mitmwatch(args, "", std::chrono::seconds(180));
  tracing = false;
  stall.join();
  kill(device, SIGCONT);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = test::parse_lines(r.out);
  ASSERT_EQ(records.size(), 23u) << r.err;
  for (const auto& rec : records) {
    EXPECT_EQ(rec["verdict"], "before-server") << rec.dump();
    EXPECT_EQ(rec["injector_hop"], 2) << rec["target"];
  }
  auto status = nlohmann::json::parse(test::run_mitmwatch({"lab", "status", "--json", "--name", lab.name}).out);
  const auto& state = status["device"]["state"];
  EXPECT_EQ(state["data_on_unknown_flows"], 0) << state.dump();
  EXPECT_GT(state["hijacked"].get<int>(), 0) << state.dump();
}

TEST_F(TraceLab, WithoutRawSocketsItSaysSoAndSendsNothing) {
  test::TempDir tmp;
  std::filesystem::permissions(tmp.path(), std::filesystem::perms::all);
  std::string cmd = std::string("setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all ") + MW_BINARY +
                    " trace --allow-private 127.0.0.1 -o " + tmp.file("out.jsonl") + " 2>" + tmp.file("err.txt");
  int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::string err = test::read_file(tmp.file("err.txt"));
  EXPECT_NE(err.find("CAP_NET_RAW"), std::string::npos) << err;
}
