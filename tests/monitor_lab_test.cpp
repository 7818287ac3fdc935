// monitor in the lab, as root: the device is switched off and on again by a
// schedule while `mitmwatch monitor` runs rounds; each transition must be
// reported in the first round after it, and steady rounds must report nothing.
// Skipped when not root.
#include "store/store.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <map>
#include <set>
#include <thread>

using namespace mw;

namespace {

std::string lab_name() { return "x" + std::to_string(getpid() % 100000); }

constexpr const char* kOneVantage = R"(
routers = 4
device_after = 2
[[vantages]]
name = "outside"
attach = 1
[[prefixes]]
name = "core"
cidr = "10.71.0.0/24"
servers = 20
untrusted = 0
attach = 4
)";

class MonitorLab {
 public:
  explicit MonitorLab(const std::string& topology = kOneVantage) : name_(lab_name()) {
    test::write_file(dir_.file("lab.toml"), "name = \"" + name_ + "\"" + topology);
    auto r = test::run_mitmwatch({"lab", "up", "--config", dir_.file("lab.toml")}, "", std::chrono::seconds(120));
    up_ = r.exit_code == 0;
    log_ = r.err;
  }
  ~MonitorLab() { test::run_mitmwatch({"lab", "down", "--name", name_}); }
  bool up() const { return up_; }
  const std::string& log() const { return log_; }
  const std::string& name() const { return name_; }
  test::TempDir& dir() { return dir_; }

  // `mitmwatch ARGS...` run from a vantage.
  test::RunResult in(const std::string& vantage, std::vector<std::string> args) {
    std::vector<std::string> full{"lab", "exec", "--name", name_, vantage, "--", MW_BINARY};
    full.insert(full.end(), args.begin(), args.end());
    return test::run_mitmwatch(full, "", std::chrono::seconds(180));
  }
  std::string ca() const { return "/run/mitmwatch-lab/" + name_ + "/public-root.pem"; }

  test::RunResult monitor(std::vector<std::string> flags, const std::string& targets) {
    std::vector<std::string> args{"lab", "exec", "--name", name_, "outside", "--", MW_BINARY, "monitor",
                                  "--db", dir_.file("m.db"), "--vantage", "outside", "--name", "lab"};
    args.insert(args.end(), flags.begin(), flags.end());
    for (const char* a : {"--", "--allow-private", "--sni", "facebook.com", "--handshake-timeout", "3", "-i"})
      args.push_back(a);
    args.push_back(targets);
    args.push_back("--ca-file");
    args.push_back("/run/mitmwatch-lab/" + name_ + "/public-root.pem");
    return test::run_mitmwatch(args, "", std::chrono::seconds(180));
  }

  std::string targets_file(int n) {
    std::string lines;
    for (int i = 1; i <= n; ++i) lines += "10.71.0." + std::to_string(i) + ":443\n";
    test::write_file(dir_.file("targets.txt"), lines);
    return dir_.file("targets.txt");
  }

 private:
  test::TempDir dir_;
  std::string name_;
  bool up_ = false;
  std::string log_;
};

class MonitorLabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
};

}  // namespace

TEST_F(MonitorLabTest, EachDeviceTransitionIsReportedInTheNextRoundAndSteadyRoundsReportNothing) {
  MonitorLab lab;
  ASSERT_TRUE(lab.up()) << lab.log();
  auto targets = lab.targets_file(20);
  // Rounds start every 2 s from now: 1-6 with the device on (the baseline and
  // five steady rounds), 7-9 off (it goes off at 11 s, between rounds 6 and 7),
  // 10-11 on again (at 17 s, between rounds 9 and 10). A second of margin each side.
  auto sched = test::run_mitmwatch({"lab", "device", "--name", lab.name(), "schedule", "0s:on", "11s:off", "17s:on"});
  ASSERT_EQ(sched.exit_code, 0) << sched.err;
  auto hook_out = lab.dir().file("hook.jsonl");
  auto r = lab.monitor({"--every", "2s", "--rounds", "11", "--events", lab.dir().file("events.jsonl"), "--on-change",
                        "cat >> " + hook_out},
                       targets);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto events = test::parse_lines(test::read_file(lab.dir().file("events.jsonl")));
  std::vector<std::pair<std::string, int>> seen;
  for (const auto& e : events) seen.push_back({e["type"], e["details"]["round"]});
  std::vector<std::pair<std::string, int>> expected{{"interception-stopped", 7}, {"interception-started", 10}};
  EXPECT_EQ(seen, expected) << r.err;
  // The hook got the same events, as JSON on its stdin.
  auto hooked = test::parse_lines(test::read_file(hook_out));
  ASSERT_EQ(hooked.size(), 2u);
  EXPECT_EQ(hooked[0]["type"], "interception-stopped");
  EXPECT_EQ(hooked[1]["type"], "interception-started");
  EXPECT_EQ(hooked[1]["details"]["intercepted_now"], 20);

  // Every round is a stored run of the series, with the off period in its figures.
  auto st = store::Store::open_read_only(lab.dir().file("m.db"));
  ASSERT_TRUE(st) << st.error();
  auto runs = st->runs("scan", "lab").value();
  ASSERT_EQ(runs.size(), 11u);
  std::vector<int64_t> intercepted;
  for (const auto& run : runs) {
    EXPECT_EQ(run.records, 20);
    EXPECT_EQ(run.vantage, "outside");
    intercepted.push_back(run.intercepted);
  }
  EXPECT_EQ(intercepted, (std::vector<int64_t>{20, 20, 20, 20, 20, 20, 0, 0, 0, 20, 20}));
  auto stored = st->events("lab").value();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].type, "interception-stopped");
  EXPECT_TRUE(stored[1].details["example"]["record_id"].is_number());

  // The report marks both events on the time series (red: stopped).
  auto report = test::run_mitmwatch({"report", "--db", lab.dir().file("m.db"), "-o", lab.dir().file("r.html")});
  ASSERT_EQ(report.exit_code, 0) << report.err;
  auto html = test::read_file(lab.dir().file("r.html"));
  EXPECT_NE(html.find("stroke=\"#d62728\" stroke-dasharray=\"4 3\"><title>interception-stopped: "), std::string::npos);
  EXPECT_NE(html.find("stroke=\"#1f77b4\" stroke-dasharray=\"4 3\"><title>interception-started: "), std::string::npos);
}

TEST_F(MonitorLabTest, ATraceLocatesWhatBecameInterceptedAndARestartKeepsItsBaseline) {
  MonitorLab lab;
  ASSERT_TRUE(lab.up()) << lab.log();
  auto targets = lab.targets_file(3);
  auto r = lab.monitor({"--every", "1s", "--rounds", "2", "--trace"}, targets);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto st = store::Store::open_read_only(lab.dir().file("m.db"));
  ASSERT_TRUE(st);
  auto traces = st->runs("trace", "lab").value();
  ASSERT_EQ(traces.size(), 1u) << "round 2 has nothing newly intercepted to trace: " << r.err;
  EXPECT_EQ(traces[0].records, 3);
  auto q = st->db().prepare("SELECT DISTINCT injector_hop FROM records WHERE run_id = ?1");
  ASSERT_TRUE(q);
  q->bind(1, traces[0].id);
  ASSERT_TRUE(q->step().value());
  EXPECT_EQ(q->int64(0), 3) << "the device sits after router 2";
  EXPECT_FALSE(q->step().value());

  // A restarted monitor compares with the stored rounds: the device is still on, no event.
  auto again = lab.monitor({"--every", "1s", "--rounds", "1", "--events", lab.dir().file("ev.jsonl")}, targets);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("2 earlier rounds"), std::string::npos) << again.err;
  EXPECT_TRUE(test::read_file(lab.dir().file("ev.jsonl")).empty()) << again.err;
  // Off now: the restarted monitor reports it in its first round.
  ASSERT_EQ(test::run_mitmwatch({"lab", "device", "--name", lab.name(), "off"}).exit_code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto off = lab.monitor({"--every", "1s", "--rounds", "1", "--events", lab.dir().file("ev.jsonl")}, targets);
  ASSERT_EQ(off.exit_code, 0) << off.err;
  auto events = test::parse_lines(test::read_file(lab.dir().file("ev.jsonl")));
  ASSERT_EQ(events.size(), 1u) << off.err;
  EXPECT_EQ(events[0]["type"], "interception-stopped");
}

// Two vantages on either side of the device, each with servers it reaches
// across it: the comparison must say which hosts each saw forged.
TEST_F(MonitorLabTest, TheVantageComparisonIsTheLabsTruth) {
  MonitorLab lab(R"(
routers = 4
device_after = 2
[[vantages]]
name = "outside"
attach = 1
[[vantages]]
name = "inside"
attach = 4
[[prefixes]]
name = "core"
cidr = "10.71.0.0/24"
servers = 6
untrusted = 0
attach = 4
via_device = true
[[prefixes]]
name = "metro"
cidr = "10.71.1.0/24"
servers = 4
untrusted = 0
attach = 1
via_device = true
)");
  ASSERT_TRUE(lab.up()) << lab.log();
  std::string targets;
  std::set<std::string> core, metro;
  for (int i = 1; i <= 6; ++i) core.insert("10.71.0." + std::to_string(i) + ":443");
  for (int i = 1; i <= 4; ++i) metro.insert("10.71.1." + std::to_string(i) + ":443");
  for (const auto& t : core) targets += t + "\n";
  for (const auto& t : metro) targets += t + "\n";
  test::write_file(lab.dir().file("targets.txt"), targets);
  auto db = lab.dir().file("c.db");
  for (const char* v : {"outside", "inside"}) {
    auto scan_out = lab.dir().file(std::string(v) + ".jsonl");
    auto s = lab.in(v, {"scan", "--allow-private", "--quiet", "--ca-file", lab.ca(), "--sni", "facebook.com", "-i",
                        lab.dir().file("targets.txt"), "-o", scan_out, "--db", db, "--vantage", v});
    ASSERT_EQ(s.exit_code, 0) << s.err;
    auto t = lab.in(v, {"trace", "--allow-private", "--quiet", "--ca-file", lab.ca(), "--from-scan", scan_out, "-o",
                        lab.dir().file(std::string(v) + "-trace.jsonl"), "--db", db, "--vantage", v});
    ASSERT_EQ(t.exit_code, 0) << t.err;
  }
  auto out = lab.dir().file("compare.json");
  auto r = test::run_mitmwatch({"report", "--compare", "--db", db, "--ca-file", lab.ca(), "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto c = nlohmann::json::parse(test::read_file(out))["compare"];
  std::map<std::string, nlohmann::json> by;
  for (const auto& v : c["vantages"]) by[v["vantage"]] = v;
  ASSERT_EQ(by.size(), 2u);
  EXPECT_EQ(by["outside"]["hosts_intercepted"], 6);
  EXPECT_EQ(by["inside"]["hosts_intercepted"], 4);
  EXPECT_DOUBLE_EQ(by["outside"]["share"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(by["inside"]["share"].get<double>(), 0.4);
  std::map<std::string, std::set<std::string>> only;
  for (const auto& d : c["intercepted_from_one_not_the_other"]) {
    std::set<std::string> hosts;
    for (const auto& e : d["examples"]) hosts.insert(e.get<std::string>());
    EXPECT_EQ(d["hosts"].get<size_t>(), hosts.size());
    only[d["intercepted_from"].get<std::string>() + ">" + d["not_from"].get<std::string>()] = hosts;
  }
  EXPECT_EQ(only["outside>inside"], core);
  EXPECT_EQ(only["inside>outside"], metro);
  // Each vantage's traces put the injector at one hop, between different routers.
  ASSERT_EQ(by["outside"]["injector_hops"].size(), 1u);
  EXPECT_EQ(by["outside"]["injector_hops"][0]["traces"], 6);
  ASSERT_EQ(by["inside"]["injector_hops"].size(), 1u);
  EXPECT_EQ(by["inside"]["injector_hops"][0]["traces"], 4);
  ASSERT_EQ(by["outside"]["hop_pairs"].size(), 1u);
  ASSERT_EQ(by["inside"]["hop_pairs"].size(), 1u);
  EXPECT_NE(by["outside"]["hop_pairs"][0]["before"], by["inside"]["hop_pairs"][0]["before"]);
  EXPECT_EQ(by["outside"]["injector_hops"][0]["hop"], 3) << "r1, r2, then the device";
  EXPECT_EQ(by["inside"]["injector_hops"][0]["hop"], 3) << "r4, r3, then the device";

  // The HTML report shows it too.
  auto html_r = test::run_mitmwatch({"report", "--compare", "--db", db, "--ca-file", lab.ca(), "-o", lab.dir().file("c.html")});
  ASSERT_EQ(html_r.exit_code, 0) << html_r.err;
  auto html = test::read_file(lab.dir().file("c.html"));
  EXPECT_NE(html.find("<h2>Vantages compared</h2>"), std::string::npos);
  EXPECT_NE(html.find("<td>outside</td><td>inside</td><td>6</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>inside</td><td>outside</td><td>4</td>"), std::string::npos);
}
