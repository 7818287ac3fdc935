// A fleet in the lab, as root: a PostgreSQL server of the test's own, a lab
// with two vantages on either side of the interception device, and
// `mitmwatch agent` processes in the vantages' namespaces claiming one
// campaign's jobs through the server's Unix socket. Skipped when not root.
#include "fleet/queue.hpp"
#include "support/lab_session.hpp"
#include "support/postgres.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>
#include <thread>

using namespace mw;

namespace {

// Each vantage reaches servers across the device: outside the 6 core hosts,
// inside the 4 metro hosts. That is the truth a comparison must find.
constexpr const char* kTwoVantages = R"(
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
)";

std::set<std::string> hosts(const char* prefix, int n) {
  std::set<std::string> out;
  for (int i = 1; i <= n; ++i) out.insert(std::string(prefix) + std::to_string(i) + ":443");
  return out;
}

class FleetLabTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() == 0) postgres_ = test::PostgresServer::start(postgres_error_).release();
  }
  static void TearDownTestSuite() {
    delete postgres_;
    postgres_ = nullptr;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
    ASSERT_NE(postgres_, nullptr) << "PostgreSQL: " << postgres_error_;
  }

  // Starts `mitmwatch agent` in a vantage's namespace; its pid (that of the agent itself: lab exec execs).
  // Its scratch files go to the lab's directory, agent-NAME.
  static int start_agent(test::LabSession& lab, const std::string& url, const std::string& vantage,
                         const std::string& name) {
    return test::spawn_mitmwatch(lab.in_args(vantage, {"agent", "--db", url, "--vantage", vantage, "--name", name,
                                                       "--exit-when-idle", "--poll", "200ms", "--work-dir",
                                                       lab.dir().file("agent-" + name)}),
                                 lab.dir().file(name + ".log"));
  }
  static int wait_for(int pid, std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) != pid) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -SIGKILL;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }
  static nlohmann::json status_of(const std::string& url, const std::string& campaign) {
    auto r = test::run_mitmwatch({"campaign", "status", campaign, "--db", url, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }

  static test::PostgresServer* postgres_;
  static std::string postgres_error_;
};
test::PostgresServer* FleetLabTest::postgres_ = nullptr;
std::string FleetLabTest::postgres_error_;

}  // namespace

TEST_F(FleetLabTest, TwoAgentsOnTwoVantagesCompleteOneCampaignAndTheComparisonIsTheLabsTruth) {
  test::LabSession lab(kTwoVantages);
  ASSERT_TRUE(lab.up()) << lab.log();
  auto core = hosts("10.71.0.", 6), metro = hosts("10.71.1.", 4);
  std::string targets;
  for (const auto& t : core) targets += t + "\n";
  for (const auto& t : metro) targets += t + "\n";
  test::write_file(lab.dir().file("targets.txt"), targets);
  auto url = postgres_->create_database("fleet_compare");
  auto created = test::run_mitmwatch({"campaign", "create", "kz", "--db", url, "-i", lab.dir().file("targets.txt"),
                                      "--sni", "facebook.com", "--vantages", "outside,inside", "--shards", "3",
                                      "--trace", "--", "--allow-private", "--ca-file", lab.ca(), "--handshake-timeout",
                                      "3"});
  ASSERT_EQ(created.exit_code, 0) << created.err;

  int outside = start_agent(lab, url, "outside", "out-1");
  int inside = start_agent(lab, url, "inside", "in-1");
  EXPECT_EQ(wait_for(outside, std::chrono::seconds(240)), 0) << test::read_file(lab.dir().file("out-1.log"));
  EXPECT_EQ(wait_for(inside, std::chrono::seconds(240)), 0) << test::read_file(lab.dir().file("in-1.log"));

  auto status = status_of(url, "kz");
  EXPECT_TRUE(status["complete"].get<bool>()) << status.dump(1);
  EXPECT_EQ(status["jobs"]["done"], 6);
  EXPECT_EQ(status["jobs"]["failed"], 0);
  std::map<std::string, nlohmann::json> per;
  for (const auto& v : status["per_vantage"]) per[v["vantage"]] = v;
  EXPECT_EQ(per["outside"]["records"], 10) << "each target once, whatever the shards";
  EXPECT_EQ(per["inside"]["records"], 10);
  EXPECT_EQ(per["outside"]["intercepted"], 6);
  EXPECT_EQ(per["inside"]["intercepted"], 4);

  // The comparison, from the PostgreSQL store the agents wrote.
  auto out = lab.dir().file("compare.json");
  auto r = test::run_mitmwatch({"report", "--compare", "--db", url, "--ca-file", lab.ca(), "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto compare = nlohmann::json::parse(test::read_file(out))["compare"];
  std::map<std::string, nlohmann::json> by;
  for (const auto& v : compare["vantages"]) by[v["vantage"]] = v;
  ASSERT_EQ(by.size(), 2u);
  EXPECT_EQ(by["outside"]["hosts_intercepted"], 6);
  EXPECT_EQ(by["inside"]["hosts_intercepted"], 4);
  EXPECT_DOUBLE_EQ(by["outside"]["share"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(by["inside"]["share"].get<double>(), 0.4);
  std::map<std::string, std::set<std::string>> only;
  for (const auto& d : compare["intercepted_from_one_not_the_other"]) {
    std::set<std::string> seen;
    for (const auto& e : d["examples"]) seen.insert(e.get<std::string>());
    EXPECT_EQ(d["hosts"].get<size_t>(), seen.size());
    only[d["intercepted_from"].get<std::string>() + ">" + d["not_from"].get<std::string>()] = seen;
  }
  EXPECT_EQ(only["outside>inside"], core);
  EXPECT_EQ(only["inside>outside"], metro);
  // Each vantage's traces put the injector at one hop, between different routers.
  ASSERT_EQ(by["outside"]["injector_hops"].size(), 1u);
  EXPECT_EQ(by["outside"]["injector_hops"][0]["traces"], 6);
  EXPECT_EQ(by["outside"]["injector_hops"][0]["hop"], 3) << "r1, r2, then the device";
  ASSERT_EQ(by["inside"]["injector_hops"].size(), 1u);
  EXPECT_EQ(by["inside"]["injector_hops"][0]["traces"], 4);
  EXPECT_EQ(by["inside"]["injector_hops"][0]["hop"], 3) << "r4, r3, then the device";
  ASSERT_EQ(by["outside"]["hop_pairs"].size(), 1u);
  ASSERT_EQ(by["inside"]["hop_pairs"].size(), 1u);
  EXPECT_NE(by["outside"]["hop_pairs"][0]["before"], by["inside"]["hop_pairs"][0]["before"]);

  // The campaign's results, taken out and into a SQLite store, compare the same.
  auto results = test::run_mitmwatch({"campaign", "results", "kz", "--db", url, "-o", lab.dir().file("kz.jsonl")});
  ASSERT_EQ(results.exit_code, 0) << results.err;
  auto lines = test::parse_lines(test::read_file(lab.dir().file("kz.jsonl")));
  EXPECT_EQ(lines.size(), 20u + 10u) << "20 scan records, 10 traces";
  for (const char* v : {"outside", "inside"})
    for (const char* kind : {"scan", "trace"}) {  // a file a run, as each command wrote them
      auto part = lab.dir().file(std::string(v) + "-" + kind + ".jsonl");
      ASSERT_EQ(test::run_mitmwatch({"campaign", "results", "kz", "--db", url, "--vantage", v, "--kind", kind, "-o", part})
                    .exit_code,
                0);
      ASSERT_EQ(test::run_mitmwatch({"import", "--db", lab.dir().file("s.db"), "--vantage", v, part}).exit_code, 0);
    }
  auto sqlite_out = lab.dir().file("compare-sqlite.json");
  r = test::run_mitmwatch({"report", "--compare", "--db", lab.dir().file("s.db"), "--ca-file", lab.ca(), "-o", sqlite_out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto from_sqlite = nlohmann::json::parse(test::read_file(sqlite_out))["compare"];
  for (auto& v : from_sqlite["vantages"]) v.erase("runs");  // one run a vantage there, a run a job here
  for (auto& v : compare["vantages"]) v.erase("runs");
  EXPECT_EQ(from_sqlite, compare);

  // The HTML report shows it too.
  auto html_r = test::run_mitmwatch({"report", "--compare", "--db", url, "--ca-file", lab.ca(), "-o", lab.dir().file("c.html")});
  ASSERT_EQ(html_r.exit_code, 0) << html_r.err;
  auto html = test::read_file(lab.dir().file("c.html"));
  EXPECT_NE(html.find("<h2>Vantages compared</h2>"), std::string::npos);
  EXPECT_NE(html.find("<td>outside</td><td>inside</td><td>6</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>inside</td><td>outside</td><td>4</td>"), std::string::npos);
}

TEST_F(FleetLabTest, AnAgentKilledMidJobLeavesItToAnotherAndNothingIsStoredTwice) {
  test::LabSession lab(kTwoVantages);
  ASSERT_TRUE(lab.up()) << lab.log();
  std::string targets;
  for (const auto& t : hosts("10.71.0.", 6)) targets += t + "\n";
  for (const auto& t : hosts("10.71.1.", 4)) targets += t + "\n";
  test::write_file(lab.dir().file("targets.txt"), targets);
  auto url = postgres_->create_database("fleet_kill");
  // One job of 10 targets x (a control and a test) at 4 handshakes a second:
  // about 5 s of scanning, with a lease of 3 s renewed every second.
  auto created = test::run_mitmwatch({"campaign", "create", "slow", "--db", url, "-i", lab.dir().file("targets.txt"),
                                      "--sni", "facebook.com", "--vantages", "outside", "--shards", "1", "--lease",
                                      "3s", "--", "--allow-private", "--ca-file", lab.ca(), "--rate", "4"});
  ASSERT_EQ(created.exit_code, 0) << created.err;

  int first = start_agent(lab, url, "outside", "doomed");
  // Killed once it is scanning and has renewed its lease at least once.
  nlohmann::json running;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    running = status_of(url, "slow")["running"];
    if (running.size() == 1 && running[0]["agent"] == "doomed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(running.size(), 1u) << test::read_file(lab.dir().file("doomed.log"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  kill(first, SIGKILL);
  waitpid(first, nullptr, 0);
  // Its scan died with it: the partial file stops growing.
  auto partial = lab.dir().file("agent-doomed/job-1-1-scan.jsonl");
  auto lines_before = test::read_lines(partial).size();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(test::read_lines(partial).size(), lines_before);
  EXPECT_LT(lines_before, 10u) << "killed mid-job";
  auto held = status_of(url, "slow");
  EXPECT_EQ(held["jobs"]["running"], 1) << "held until its lease runs out";

  int second = start_agent(lab, url, "outside", "heir");
  EXPECT_EQ(wait_for(second, std::chrono::seconds(120)), 0) << test::read_file(lab.dir().file("heir.log"));
  EXPECT_NE(test::read_file(lab.dir().file("heir.log")).find("job 1 (slow shard 0/1, attempt 2): done"),
            std::string::npos)
      << test::read_file(lab.dir().file("heir.log"));

  auto status = status_of(url, "slow");
  EXPECT_TRUE(status["complete"].get<bool>());
  EXPECT_EQ(status["jobs"]["done"], 1);
  auto results = test::run_mitmwatch({"campaign", "results", "slow", "--db", url});
  ASSERT_EQ(results.exit_code, 0) << results.err;
  auto records = test::parse_lines(results.out);
  std::multiset<std::string> targets_seen;
  for (const auto& rec : records) targets_seen.insert(rec["target"].get<std::string>());
  EXPECT_EQ(records.size(), 10u);
  EXPECT_EQ(std::set<std::string>(targets_seen.begin(), targets_seen.end()).size(), 10u) << "each target once";
  auto runs = test::run_mitmwatch({"runs", "--db", url, "--json"});
  EXPECT_EQ(test::parse_lines(runs.out).size(), 1u) << "one run: the doomed agent stored nothing";
}
