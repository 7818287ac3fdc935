// build/mitmwatch as a user runs it: flags, exit codes, files, kill -9.
#include "certs/issue.hpp"
#include "lab/stand_in.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

using namespace mw;

namespace {

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new lab::StandInWorld(); }
  static void TearDownTestSuite() { delete world_; }

  void SetUp() override { test::write_pem(ca_file(), {world_->public_root().cert.get()}); }

  std::string ca_file() const { return dir_.file("root.pem"); }

  std::vector<net::Endpoint> serve(const std::vector<std::shared_ptr<lab::Site>>& sites, int subnet = 0) {
    std::vector<lab::Listener> listeners;
    for (size_t i = 0; i < sites.size(); ++i)
      listeners.push_back(
          {{*net::IpAddress::parse("127.89." + std::to_string(subnet) + "." + std::to_string(i + 1)), 0}, sites[i]});
    auto s = lab::TlsServer::start(std::move(listeners), {});
    EXPECT_TRUE(s) << s.error();
    servers_.push_back(std::move(*s));
    return servers_.back()->endpoints();
  }

  static std::string lines_of(const std::vector<net::Endpoint>& eps) {
    std::string out;
    for (const auto& e : eps) out += e.to_string() + "\n";
    return out;
  }

  std::vector<std::string> scan_args(std::vector<std::string> extra) const {
    std::vector<std::string> args{"scan", "--allow-private", "--ca-file", ca_file(), "--quiet",
                                  "--connect-timeout", "2", "--handshake-timeout", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  static lab::StandInWorld* world_;
  test::TempDir dir_;
  std::vector<std::unique_ptr<lab::TlsServer>> servers_;
};
lab::StandInWorld* CliTest::world_ = nullptr;


}  // namespace

TEST_F(CliTest, HelpTeachesAndVersionAnswers) {
  auto top = test::run_mitmwatch({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_NE(top.out.find("scan"), std::string::npos);
  EXPECT_NE(top.out.find("demo"), std::string::npos);
  auto scan = test::run_mitmwatch({"scan", "--help"});
  EXPECT_EQ(scan.exit_code, 0);
  for (const char* s : {"Examples:", "--sni", "--control", "--resume", "--shard", "--select-trusted", "Exit codes"})
    EXPECT_NE(scan.out.find(s), std::string::npos) << s;
  auto trace = test::run_mitmwatch({"trace", "--help"});
  EXPECT_EQ(trace.exit_code, 0);
  for (const char* s : {"Examples:", "--max-ttl", "--from-scan", "--asn-db", "--pcap", "CAP_NET_RAW", "Exit codes"})
    EXPECT_NE(trace.out.find(s), std::string::npos) << s;
  for (const char* cmd : {"monitor", "import", "report", "serve"}) {
    auto h = test::run_mitmwatch({cmd, "--help"});
    EXPECT_EQ(h.exit_code, 0) << cmd;
    EXPECT_NE(h.out.find("Examples:"), std::string::npos) << cmd;
    EXPECT_NE(h.out.find("--db"), std::string::npos) << cmd;
  }
  auto monitor = test::run_mitmwatch({"monitor", "--help"});
  for (const char* s : {"interception-stopped", "--on-change", "--every", "share-moved"})
    EXPECT_NE(monitor.out.find(s), std::string::npos) << s;
  auto version = test::run_mitmwatch({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("mitmwatch 0."), std::string::npos);
}

TEST_F(CliTest, BadInputIsExitTwoWithTheInputNamedAndNothingWritten) {
  auto out = dir_.file("never.jsonl");
  test::write_file(dir_.file("bad-targets.txt"), "192.0.2.1\n192.0.2.300\n");
  test::write_file(dir_.file("bad-ca.pem"), "not a certificate\n");
  test::write_file(dir_.file("bad-blocklist.conf"), "10.0.0.0/40\n");
  struct Case {
    std::vector<std::string> args;
    std::string mentions;
  } cases[] = {
      {{"scan", "--no-such-flag"}, "--no-such-flag"},
      {{"scan", "-o", out, "192.0.2.1:99999"}, "192.0.2.1:99999"},
      {{"scan", "-o", out, "-i", dir_.file("bad-targets.txt")}, "bad-targets.txt:2"},
      {{"scan", "-o", out, "-i", dir_.file("missing.txt")}, "missing.txt"},
      {{"scan", "-o", out, "--allow-private", "--ca-file", dir_.file("bad-ca.pem"), "127.0.0.1:9"}, "bad-ca.pem"},
      {{"scan", "-o", out, "--allow-private", "--blocklist", dir_.file("bad-blocklist.conf"), "127.0.0.1:9"},
       "bad-blocklist.conf:1"},
      {{"scan", "-o", out, "127.0.0.1"}, "--allow-private"},
      {{"scan", "-o", out, "--allow-private", "--shard", "3/3", "127.0.0.1:9"}, "--shard"},
      {{"scan", "-o", out, "--allow-private", "--sni", "bad name!", "127.0.0.1:9"}, "bad name!"},
      {{"scan", "--allow-private", "--resume", "127.0.0.1:9"}, "--resume needs -o"},
      {{"scan", "-o", out, "--allow-private", "--interceptors", dir_.file("bad-ca.pem"), "127.0.0.1:9"},
       "bad-ca.pem"},
      {{"demo", "--servers", "1"}, "--servers"},
      {{"scan", "-o", out, "--allow-private", "--contact", "me@example.org", "--hello", "cert-grab", "127.0.0.1:9"},
       "--hello openssl"},
      {{"scan", "-o", out, "--allow-private", "--user-agent", "x\r\nEvil: 1", "127.0.0.1:9"}, "--user-agent"},
      {{"scan", "-o", out, "--allow-private", "--source-ip", "192.0.2.77", "127.0.0.1:9"}, "192.0.2.77"},
      {{"scan", "-o", out, "--allow-private", "--ca-dir", dir_.file("no-such-dir"), "127.0.0.1:9"}, "no-such-dir"},
      {{"trace", "-o", out, "--allow-private", "--max-ttl", "0", "127.0.0.1:9"}, "--max-ttl"},
      {{"trace", "-o", out, "--allow-private", "--runs", "3", "--max-runs", "2", "127.0.0.1:9"}, "--runs"},
      {{"trace", "-o", out, "--allow-private", "--from-scan", dir_.file("missing.jsonl")}, "missing.jsonl"},
      {{"trace", "-o", out, "--allow-private", "--from-scan", dir_.file("bad-ca.pem")}, "bad-ca.pem: line 1"},
      {{"trace", "-o", out, "--allow-private", "--asn-db", dir_.file("bad-ca.pem"), "127.0.0.1:9"}, "bad-ca.pem"},
      {{"trace", "-o", out, "--allow-private", "--sni", "bad name!", "127.0.0.1:9"}, "bad name!"},
      {{"trace", "-o", out, "127.0.0.1"}, "--allow-private"},
      {{"trace", "--summarize", dir_.file("missing.jsonl")}, "missing.jsonl"},
      {{"pcap", "-o", out, dir_.file("missing.pcap")}, "missing.pcap"},
      {{"fpserver", "-o", out, "--listen", "localhost:99999"}, "localhost:99999"},
      {{"fpserver", "-o", out, "--listen", "127.0.0.1:0", "--cert", dir_.file("bad-ca.pem")}, "--key"},
      {{"fpserver", "-o", out, "--listen", "127.0.0.1:0", "--expect", dir_.file("bad-ca.pem")}, "bad-ca.pem"},
      {{"fpserver", "-o", out, "--listen", "127.0.0.1:0", "--cert", dir_.file("bad-ca.pem"), "--key",
        dir_.file("bad-ca.pem")},
       "bad-ca.pem"},
      {{"pcap", "-o", out, dir_.file("bad-ca.pem")}, "bad-ca.pem"},
      {{"import", "--db", dir_.file("s.db"), dir_.file("missing.jsonl")}, "missing.jsonl"},
      {{"runs", "--db", dir_.file("missing.db")}, "missing.db"},
      {{"export", "--db", dir_.file("missing.db"), "--run", "1"}, "missing.db"},
      {{"report", "--db", dir_.file("missing.db"), "-o", dir_.file("r.html")}, "missing.db"},
      {{"serve", "--db", dir_.file("missing.db")}, "missing.db"},
      {{"monitor", "--db", dir_.file("m.db"), "--every", "soon", "--", "127.0.0.1:9"}, "'soon' is not a duration"},
      {{"monitor", "--db", dir_.file("m.db"), "--", "-i", "x.txt", "-o", "y.jsonl"}, "scan argument -o"},
      {{"monitor", "--db", dir_.file("m.db"), "--rounds", "-1", "--", "127.0.0.1:9"}, "--rounds"},
      {{"pcap", "-o", out, "--fingerprints", dir_.file("bad-ca.pem"), std::string(MW_SHARED_DATA) + "/pcaps/tls12.pcap"},
       "bad-ca.pem"},
  };
  for (const auto& c : cases) {
    auto r = test::run_mitmwatch(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args[1] << " " << r.err;
    EXPECT_NE(r.err.find(c.mentions), std::string::npos) << "stderr should name '" << c.mentions << "': " << r.err;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.mentions;
  }
}

TEST_F(CliTest, RefusesToOverwriteResults) {
  auto out = dir_.file("results.jsonl");
  test::write_file(out, "{\"schema\":\"mitmwatch.scan/1\"}\n");
  auto r = test::run_mitmwatch(scan_args({"-o", out, "127.0.0.1:9"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--resume"), std::string::npos);
  EXPECT_EQ(test::read_file(out), "{\"schema\":\"mitmwatch.scan/1\"}\n");
}

TEST_F(CliTest, ScansFromStdinToJsonLinesWithASummary) {
  auto eps = serve({world_->clean_site("a.example"), world_->intercepted_site("b.example"),
                    world_->blocking_site("c.example", lab::SniAction::reset)});
  auto r = test::run_mitmwatch(scan_args({"--sni", "facebook.com,google.com"}), lines_of(eps));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = test::parse_lines(r.out);
  ASSERT_EQ(records.size(), 6u);
  std::map<std::string, std::set<std::string>> verdicts;
  for (const auto& rec : records) {
    EXPECT_EQ(rec["schema"], "mitmwatch.scan/1");
    verdicts[rec["target"]].insert(rec["verdict"].get<std::string>());
    for (const auto& a : rec["attempts"]) {
      EXPECT_TRUE(a.contains("chain"));
      EXPECT_TRUE(a.contains("handshake_ms"));
    }
  }
  EXPECT_EQ(verdicts[eps[0].to_string()], std::set<std::string>{"clean"});
  EXPECT_EQ(verdicts[eps[1].to_string()], std::set<std::string>{"intercepted"});
  EXPECT_EQ(verdicts[eps[2].to_string()], std::set<std::string>{"blocked"});
  EXPECT_NE(r.err.find("intercepted: 1 of 3 targets (33.3 %)"), std::string::npos) << r.err;
}

TEST_F(CliTest, SelectTrustedWritesATargetListForTheNextScan) {
  auto eps = serve({world_->clean_site("a.example"), world_->self_signed_site("b.example"),
                    world_->intercepted_site("c.example")});
  auto list = dir_.file("trusted.txt");
  auto input = dir_.file("all.txt");
  test::write_file(input, lines_of(eps) + "127.89.0.200:9\n");
  auto r = test::run_mitmwatch(scan_args({"--select-trusted", "-i", input, "-o", list}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = test::read_lines(list);
  EXPECT_EQ(std::set<std::string>(lines.begin(), lines.end()),
            (std::set<std::string>{eps[0].to_string(), eps[2].to_string()}));
  EXPECT_NE(r.err.find("2 of 4 targets"), std::string::npos) << r.err;
  auto next = test::run_mitmwatch(scan_args({"-i", list, "--sni", "facebook.com"}));
  ASSERT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(test::parse_lines(next.out).size(), 2u);
}

TEST_F(CliTest, ShardsSplitTheTargetsExactlyOnce) {
  std::vector<std::shared_ptr<lab::Site>> sites;
  for (int i = 0; i < 12; ++i) sites.push_back(world_->clean_site("s" + std::to_string(i) + ".example"));
  auto eps = serve(sites);
  auto input = dir_.file("targets.txt");
  test::write_file(input, lines_of(eps));
  std::multiset<std::string> seen;
  for (int i = 0; i < 3; ++i) {
    auto r = test::run_mitmwatch(scan_args({"-i", input, "--sni", "facebook.com", "--shard",
                                            std::to_string(i) + "/3"}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const auto& rec : test::parse_lines(r.out)) seen.insert(rec["target"].get<std::string>());
  }
  std::multiset<std::string> all;
  for (const auto& e : eps) all.insert(e.to_string());
  EXPECT_EQ(seen, all);
}

TEST_F(CliTest, AScanKilledMidwayResumesWithNothingLostOrDoubled) {
  // Slow servers make the scan last a few seconds so it can be killed in the middle.
  std::vector<std::shared_ptr<lab::Site>> sites;
  for (int i = 0; i < 30; ++i) {
    if (i % 3 == 0) {
      sites.push_back(world_->blocking_site("slow" + std::to_string(i) + ".example", lab::SniAction::silent));
    } else {
      sites.push_back(world_->clean_site("fast" + std::to_string(i) + ".example"));
    }
  }
  auto eps = serve(sites, 1);
  auto input = dir_.file("targets.txt");
  test::write_file(input, lines_of(eps));
  auto out = dir_.file("scan.jsonl");
  auto args = scan_args({"-i", input, "-o", out, "--sni", "facebook.com,google.com", "--concurrency", "3",
                         "--retries", "1", "--handshake-timeout", "0.4"});
  auto before = test::kill_nine_after_lines(args, out, 10, dir_.file("first.log"));
  ASSERT_GE(before, 10u) << test::read_file(dir_.file("first.log"));
  ASSERT_LT(before, 60u) << "the scan finished before it could be killed";
  // As if the kill had landed in the middle of a write.
  {
    std::ofstream torn(out, std::ios::app);
    torn << "{\"schema\":\"mitmwatch.scan/1\",\"target\":\"" << eps[0].to_string() << "\",\"sni\":\"facebo";
  }

  auto r = test::run_mitmwatch(
      [&] {
        auto a = args;
        a.push_back("--resume");
        return a;
      }(),
      "", std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = test::read_lines(out);
  ASSERT_EQ(lines.size(), 60u);
  std::set<std::pair<std::string, std::string>> keys;
  for (const auto& line : lines) {
    auto rec = nlohmann::json::parse(line);  // every line is whole JSON
    keys.insert({rec["target"].get<std::string>(), rec["sni"].get<std::string>()});
  }
  EXPECT_EQ(keys.size(), 60u);
  EXPECT_NE(r.err.find("intercepted: 0 of 30 targets"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("blocked"), std::string::npos);
}

TEST_F(CliTest, CaDirAndSourceAddressAreUsed) {
  auto eps = serve({world_->clean_site("a.example")}, 2);
  auto ca_dir = dir_.file("cadir");
  std::filesystem::create_directories(ca_dir);
  test::write_pem(ca_dir + "/lab-root.pem", {world_->public_root().cert.get()});
  test::write_file(ca_dir + "/README", "not a certificate, skipped\n");
  auto r = test::run_mitmwatch({"scan", "--allow-private", "--quiet", "--ca-dir", ca_dir, "--source-ip", "127.0.0.5",
                                "--sni", "facebook.com", eps[0].to_string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto records = test::parse_lines(r.out);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["attempts"][0]["trusted"], true);
  // Without the lab root in the store the same chain is untrusted.
  auto other = dir_.file("other.pem");
  test::write_pem(other, {certs::make_root({{"CN", "Unrelated Root"}}).cert.get()});
  r = test::run_mitmwatch({"scan", "--allow-private", "--quiet", "--ca-file", other, "--sni", "facebook.com",
                           eps[0].to_string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::parse_lines(r.out)[0]["attempts"][0]["trusted"], false);
}

TEST_F(CliTest, ProgressBarOnATerminalOnly) {
  std::vector<std::shared_ptr<lab::Site>> sites;
  for (int i = 0; i < 4; ++i) sites.push_back(world_->clean_site("p" + std::to_string(i) + ".example"));
  auto eps = serve(sites, 3);
  auto input = dir_.file("targets.txt");
  test::write_file(input, lines_of(eps));
  std::vector<std::string> args{"scan", "--allow-private", "--ca-file", ca_file(), "-i", input, "--rate", "8",
                                "-o", dir_.file("p.jsonl")};
  auto on_tty = test::run_on_terminal(args);
  EXPECT_NE(on_tty.find("4/4 targets"), std::string::npos) << on_tty;
  EXPECT_NE(on_tty.find("ETA"), std::string::npos) << on_tty;
  args.push_back("--quiet");
  args[args.size() - 2] = dir_.file("q.jsonl");
  EXPECT_EQ(test::run_on_terminal(args).find("ETA"), std::string::npos);
  auto piped = test::run_mitmwatch({"scan", "--allow-private", "--ca-file", ca_file(), "-i", input});
  EXPECT_EQ(piped.err.find("ETA"), std::string::npos) << piped.err;
}

TEST_F(CliTest, ATruncatedCaptureKeepsWhatWasReadAndSaysWhere) {
  auto whole = test::read_file(std::string(MW_SHARED_DATA) + "/pcaps/latest.pcapng");
  auto cut = dir_.file("cut.pcapng");
  test::write_file(cut, whole.substr(0, whole.size() * 6 / 10));
  auto r = test::run_mitmwatch({"pcap", cut});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("cut.pcapng"), std::string::npos) << r.err;
  auto records = test::parse_lines(r.out);
  EXPECT_FALSE(records.empty()) << "the connections before the cut are lost";
  for (const auto& rec : records) EXPECT_EQ(rec["schema"], "mitmwatch.pcap/1");
  auto full = test::parse_lines(test::run_mitmwatch({"pcap", std::string(MW_SHARED_DATA) + "/pcaps/latest.pcapng"}).out);
  EXPECT_LT(records.size(), full.size() + 1);
}

// ---- sweep ----

TEST_F(CliTest, SweepFindsTheTriggersAndInfersTheStandInsRule) {
  // The stand-in forges on the 37 names and their subdomains, as a server
  // that reads the whole hello: it "reassembles" everything.
  auto eps = serve({world_->intercepted_site("a.example"), world_->intercepted_site("b.example")}, 7);
  std::vector<std::string> args{"sweep", "--allow-private", "-q", "--rate", "0", "--per-target-rate", "0", "--ca-file", ca_file(), "--handshake-timeout", "3",
                                eps[0].to_string(), eps[1].to_string(), "--infer-rule", "--domain", "vk.com",
                                "--domain", "kaspi.kz", "--domain", "www.youtube.com"};
  auto r = test::run_mitmwatch(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("triggers: 2 of 3 domains"), std::string::npos) << r.err;
  auto lines = test::parse_lines(r.out);
  ASSERT_FALSE(lines.empty());
  std::map<std::string, std::string> plain;
  for (const auto& l : lines)
    if (l["schema"] == "mitmwatch.sweep/1" && l["variant"] == "plain")
      plain[l["target"].get<std::string>() + " " + l["domain"].get<std::string>()] = l["verdict"];
  EXPECT_EQ(plain.size(), 6u);
  EXPECT_EQ(plain[eps[0].to_string() + " vk.com"], "intercepted");
  EXPECT_EQ(plain[eps[1].to_string() + " kaspi.kz"], "clean");
  const auto& rule = lines.back();
  ASSERT_EQ(rule["schema"], "mitmwatch.sweep-rule/1");
  EXPECT_EQ(rule["rule"]["match"], "subdomains");
  EXPECT_EQ(rule["rule"]["facts"]["case_insensitive"], true);
  EXPECT_EQ(rule["rule"]["facts"]["reassembles_segments"], true);
  EXPECT_EQ(rule["rule"]["facts"]["reassembles_records"], true);
  // Neither trigger holds the other, so both decide the rule.
  EXPECT_EQ(rule["decided_by"], (nlohmann::json{"vk.com", "www.youtube.com"}));
}

TEST_F(CliTest, SweepRefusesBadInputNamingIt) {
  auto eps = serve({world_->clean_site("a.example")}, 8);
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"sweep", "--allow-private", "-q", "--ca-file", ca_file(), eps[0].to_string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_mitmwatch(args);
  };
  auto none = run({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("no domains"), std::string::npos) << none.err;
  auto tpl = run({"--domain", "vk.com", "--template", "netscape"});
  EXPECT_EQ(tpl.exit_code, 2);
  EXPECT_NE(tpl.err.find("netscape"), std::string::npos) << tpl.err;
  auto bad = run({"--domain", "vk com"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("vk com"), std::string::npos) << bad.err;
  auto missing = run({"--domains", dir_.file("nope.txt")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("nope.txt"), std::string::npos) << missing.err;
  auto grab = test::run_mitmwatch({"scan", "--allow-private", eps[0].to_string(), "--hello", "quic"});
  EXPECT_EQ(grab.exit_code, 2);
  EXPECT_NE(grab.err.find("--hello"), std::string::npos) << grab.err;
}

// The scanning host's page: served, every value escaped, the opt-out format
// beside it, the opted-out prefixes counted; as root it gives root up once bound.
TEST_F(CliTest, TheNoticePageSaysWhoScansAndHowToOptOut) {
  test::write_file(dir_.file("opt-out.txt"), "192.0.2.0/24\n2001:db8::/32  # asked 2026-12-01\nexample.org\n");
  auto printed = test::run_mitmwatch({"notice", "--contact", "scans@example.org", "--organization", "A <b>&</b> B",
                                      "--opt-out", dir_.file("opt-out.txt"), "--print"});
  ASSERT_EQ(printed.exit_code, 0) << printed.err;
  EXPECT_NE(printed.out.find("A &lt;b&gt;&amp;&lt;/b&gt; B"), std::string::npos);
  EXPECT_EQ(printed.out.find("<b>&</b>"), std::string::npos);
  EXPECT_NE(printed.out.find("href=\"mailto:scans@example.org\""), std::string::npos);
  EXPECT_NE(printed.out.find("2 prefixes are on it today"), std::string::npos);

  auto missing = test::run_mitmwatch({"notice", "--print"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--contact"), std::string::npos);

  std::string log = dir_.file("notice.log");
  int pid = test::spawn_mitmwatch({"notice", "--contact", "https://example.org/study", "--listen", "127.0.0.1:0"}, log);
  int port = 0;
  for (int i = 0; i < 200 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto text = test::read_file(log);
    if (auto at = text.find("notice: http://127.0.0.1:"); at != std::string::npos)
      port = std::atoi(text.c_str() + at + std::strlen("notice: http://127.0.0.1:"));
  }
  ASSERT_GT(port, 0) << test::read_file(log);
  httplib::Client client("127.0.0.1", port);
  auto page = client.Get("/anything");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<a href=\"https://example.org/study\">"), std::string::npos);
  auto format = client.Get("/opt-out.txt");
  ASSERT_TRUE(format);
  EXPECT_NE(format->body.find("https://example.org/study"), std::string::npos);
  EXPECT_NE(format->body.find("CIDR"), std::string::npos);
  if (geteuid() == 0) {
    std::string status = test::read_file("/proc/" + std::to_string(pid) + "/status");
    auto uid = status.find("\nUid:");
    ASSERT_NE(uid, std::string::npos);
    EXPECT_NE(std::stoi(status.substr(uid + 5)), 0) << "gives root up once bound";
  }
  ::kill(pid, SIGTERM);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << test::read_file(log);
}
