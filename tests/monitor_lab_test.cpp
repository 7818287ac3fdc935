// monitor in the lab, as root: the device is switched off and on again by a
// schedule while `mitmwatch monitor` runs rounds; each transition must be
// reported in the first round after it, and steady rounds must report nothing.
// Skipped when not root.
#include "store/store.hpp"
#include "support/lab_session.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <map>
#include <set>

using namespace mw;

namespace {

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

// A one-vantage lab, and monitor runs from its outside vantage into m.db.
class MonitorLab : public test::LabSession {
 public:
  MonitorLab() : LabSession(kOneVantage) {}

  test::RunResult monitor(std::vector<std::string> flags, const std::string& targets) {
    std::vector<std::string> args{"monitor", "--db", dir().file("m.db"), "--vantage", "outside", "--name", "lab"};
    args.insert(args.end(), flags.begin(), flags.end());
    for (const char* a : {"--", "--allow-private", "--sni", "facebook.com", "--handshake-timeout", "3", "-i"})
      args.push_back(a);
    args.push_back(targets);
    args.push_back("--ca-file");
    args.push_back(ca());
    return in("outside", args);
  }

  std::string targets_file(int n) {
    std::string lines;
    for (int i = 1; i <= n; ++i) lines += "10.71.0." + std::to_string(i) + ":443\n";
    test::write_file(dir().file("targets.txt"), lines);
    return dir().file("targets.txt");
  }
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
  // Rounds 1-6 with the device on (the baseline and five steady rounds), 7-9
  // off, 10-11 on again. The --on-round hook switches it after rounds 6 and 9,
  // before the monitor starts the next round, however long a round took.
  std::string device = fmt::format("{} lab device --name {}", MW_BINARY, lab.name());
  std::string switcher = fmt::format(
      "case $(sed -n 's/.*\"round\":\\([0-9]*\\).*/\\1/p') in 6) {0} off;; 9) {0} on;; esac", device);
  auto hook_out = lab.dir().file("hook.jsonl");
  auto r = lab.monitor({"--every", "1500ms", "--rounds", "11", "--events", lab.dir().file("events.jsonl"), "--on-change",
                        "cat >> " + hook_out, "--on-round", switcher},
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
  // `lab device off` returns once the device has switched.
  ASSERT_EQ(test::run_mitmwatch({"lab", "device", "--name", lab.name(), "off"}).exit_code, 0);
  auto off = lab.monitor({"--every", "1s", "--rounds", "1", "--events", lab.dir().file("ev.jsonl")}, targets);
  ASSERT_EQ(off.exit_code, 0) << off.err;
  auto events = test::parse_lines(test::read_file(lab.dir().file("ev.jsonl")));
  ASSERT_EQ(events.size(), 1u) << off.err;
  EXPECT_EQ(events[0]["type"], "interception-stopped");
}
