// The store on real records: scans of real TLS servers on loopback written
// with --db and imported from JSON Lines, read back, re-imported, and a
// kill -9 in the middle of an import.
#include "lab/stand_in.hpp"
#include "store/store.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <set>
#include <thread>

using namespace mw;

namespace {

class StoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world_ = new lab::StandInWorld();
    std::vector<std::shared_ptr<lab::Site>> sites;
    for (int i = 0; i < 12; ++i) {
      auto name = "site" + std::to_string(i) + ".example";
      sites.push_back(i % 3 == 0 ? world_->intercepted_site(name)
                      : i % 4 == 1 ? world_->blocking_site(name, lab::SniAction::reset)
                                   : world_->clean_site(name));
    }
    std::vector<lab::Listener> listeners;
    for (size_t i = 0; i < sites.size(); ++i)
      listeners.push_back({{*net::IpAddress::parse("127.91.0." + std::to_string(i + 1)), 0}, sites[i]});
    auto s = lab::TlsServer::start(std::move(listeners), {});
    ASSERT_TRUE(s) << s.error();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete world_;
  }

  void SetUp() override { test::write_pem(dir_.file("root.pem"), {world_->public_root().cert.get()}); }

  std::string targets_file() {
    std::string lines;
    for (const auto& e : server_->endpoints()) lines += e.to_string() + "\n";
    test::write_file(dir_.file("targets.txt"), lines);
    return dir_.file("targets.txt");
  }

  // A real scan of the loopback sites; its JSONL path.
  std::string scan(const std::string& name, std::vector<std::string> extra = {}) {
    auto out = dir_.file(name);
    std::vector<std::string> args{"scan", "--allow-private", "--ca-file", dir_.file("root.pem"), "--quiet",
                                  "-i", targets_file(), "--sni", "facebook.com,google.com", "-o", out};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = test::run_mitmwatch(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out;
  }

  static std::vector<nlohmann::json> records_of(const std::string& path) {
    return test::parse_lines(test::read_file(path));
  }

  std::vector<nlohmann::json> exported(const std::string& db, int64_t run) {
    auto r = test::run_mitmwatch({"export", "--db", db, "--run", std::to_string(run)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return test::parse_lines(r.out);
  }

  static lab::StandInWorld* world_;
  static lab::TlsServer* server_;
  test::TempDir dir_;
};
lab::StandInWorld* StoreTest::world_ = nullptr;
lab::TlsServer* StoreTest::server_ = nullptr;

std::multiset<std::string> as_set(const std::vector<nlohmann::json>& records) {
  std::multiset<std::string> out;
  for (const auto& r : records) out.insert(r.dump());
  return out;
}

}  // namespace

TEST_F(StoreTest, ALiveScanWithDbIsOneRunThatExportsExactlyItsFile) {
  auto db = dir_.file("s.db");
  auto file = scan("scan.jsonl", {"--db", db, "--vantage", "lab-outside"});
  auto written = records_of(file);
  ASSERT_EQ(written.size(), 24u);

  auto st = store::Store::open_read_only(db);
  ASSERT_TRUE(st) << st.error();
  auto runs = st->runs();
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 1u);
  const auto& run = runs->front();
  EXPECT_EQ(run.command, "scan");
  EXPECT_EQ(run.vantage, "lab-outside");
  EXPECT_EQ(run.status, "complete");
  EXPECT_EQ(run.source, file);
  std::map<std::string, int64_t> verdicts;
  for (const auto& r : written) ++verdicts[r["verdict"].get<std::string>()];
  EXPECT_EQ(run.records, 24);
  EXPECT_EQ(run.intercepted, verdicts["intercepted"]);
  EXPECT_EQ(run.blocked, verdicts["blocked"]);
  EXPECT_EQ(run.clean, verdicts["clean"]);
  EXPECT_GT(run.intercepted, 0);
  EXPECT_GT(run.blocked, 0);

  // Chains come back byte for byte, though each certificate is stored once.
  EXPECT_EQ(as_set(exported(db, run.id)), as_set(written));
  std::set<std::string> distinct;
  size_t in_chains = 0;
  for (const auto& r : written)
    for (const auto& a : r["attempts"])
      for (const auto& c : a["chain"]) {
        distinct.insert(c.get<std::string>());
        ++in_chains;
      }
  EXPECT_EQ(st->count("certificates").value(), static_cast<int64_t>(distinct.size()));
  EXPECT_LT(distinct.size() * 3, in_chains);

  // The summary tables say what the records say.
  auto q = st->db().prepare("SELECT sni, records, intercepted FROM sni_stats WHERE vantage = 'lab-outside'");
  ASSERT_TRUE(q);
  std::map<std::string, std::pair<int64_t, int64_t>> by_sni;
  while (q->step().value()) by_sni[q->text(0)] = {q->int64(1), q->int64(2)};
  std::map<std::string, std::pair<int64_t, int64_t>> expected;
  for (const auto& r : written) {
    auto& e = expected[r["sni"].get<std::string>()];
    ++e.first;
    e.second += r["verdict"] == "intercepted";
  }
  EXPECT_EQ(by_sni, expected);
  auto issuers = st->db().prepare("SELECT issuer, records FROM issuer_stats");
  ASSERT_TRUE(issuers);
  ASSERT_TRUE(issuers->step().value());
  EXPECT_NE(issuers->text(0).find("CN="), std::string::npos);
  EXPECT_EQ(issuers->int64(1), verdicts["intercepted"]);
}

TEST_F(StoreTest, ReimportAddsNothingAndAGrownFileAddsOnlyItsNewLines) {
  auto file = scan("scan.jsonl");
  auto lines = test::read_lines(file);
  ASSERT_EQ(lines.size(), 24u);
  auto part = dir_.file("part.jsonl");
  std::string first_half;
  for (size_t i = 0; i < 10; ++i) first_half += lines[i] + "\n";
  test::write_file(part, first_half);
  auto db = dir_.file("i.db");

  auto r1 = test::run_mitmwatch({"import", "--db", db, part});
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  EXPECT_NE(r1.err.find("10 records new, 0 already stored"), std::string::npos) << r1.err;
  auto r2 = test::run_mitmwatch({"import", "--db", db, part});
  EXPECT_NE(r2.err.find("0 records new, 10 already stored"), std::string::npos) << r2.err;
  // As a --resume makes it: the same file, longer.
  std::string rest;
  for (size_t i = 10; i < lines.size(); ++i) rest += lines[i] + "\n";
  test::write_file(part, first_half + rest);
  auto r3 = test::run_mitmwatch({"import", "--db", db, part});
  EXPECT_NE(r3.err.find("14 records new, 10 already stored"), std::string::npos) << r3.err;

  auto st = store::Store::open_read_only(db);
  ASSERT_TRUE(st);
  auto runs = st->runs().value();
  ASSERT_EQ(runs.size(), 1u) << "the grown file is the same run";
  EXPECT_EQ(runs[0].records, 24);
  EXPECT_EQ(runs[0].status, "imported");
  EXPECT_EQ(st->count("records").value(), 24);
  EXPECT_EQ(as_set(exported(db, runs[0].id)), as_set(records_of(file)));
  // Summaries were not counted twice either.
  auto q = st->db().prepare("SELECT sum(records) FROM sni_stats");
  ASSERT_TRUE(q && q->step().value());
  EXPECT_EQ(q->int64(0), 24);
}

TEST_F(StoreTest, ABadLineIsNamedByFileAndLineAndATornLastLineIsSkipped) {
  auto file = scan("scan.jsonl");
  auto lines = test::read_lines(file);
  auto bad = dir_.file("bad.jsonl");
  test::write_file(bad, lines[0] + "\n" + lines[1] + "\n{\"schema\":\"someone.else/1\"}\n");
  auto db = dir_.file("b.db");
  auto r = test::run_mitmwatch({"import", "--db", db, bad});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.jsonl:3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not a mitmwatch record"), std::string::npos) << r.err;

  auto torn = dir_.file("torn.jsonl");
  test::write_file(torn, lines[0] + "\n" + lines[1] + "\n" + lines[2].substr(0, 100));
  auto t = test::run_mitmwatch({"import", "--db", dir_.file("t.db"), torn});
  EXPECT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.err.find("2 records new"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find("torn last line skipped"), std::string::npos) << t.err;
  EXPECT_EQ(test::read_file(torn).size(), lines[0].size() + lines[1].size() + 102) << "import never writes its input";

  auto missing = test::run_mitmwatch({"runs", "--db", dir_.file("no-such.db")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("no-such.db"), std::string::npos);
}

TEST_F(StoreTest, KillNineDuringAnImportLosesNoCommittedRun) {
  auto file = scan("scan.jsonl");
  auto lines = test::read_lines(file);
  // A big file of distinct records: the scan's, each with its target renamed.
  auto big = dir_.file("big.jsonl");
  constexpr size_t kCopies = 40;  // 960 records: batches of 200 (--batch) and a last of 160
  {
    std::ofstream out(big);
    for (size_t copy = 0; copy < kCopies; ++copy)
      for (const auto& line : lines) {
        auto j = nlohmann::ordered_json::parse(line);
        j["target"] = "198.51.100." + std::to_string(copy % 250) + ":" + std::to_string(1000 + copy);
        out << j.dump() << "\n";
      }
  }
  const int64_t big_lines = static_cast<int64_t>(kCopies * lines.size());
  auto db = dir_.file("k.db");
  auto first = test::run_mitmwatch({"import", "--db", db, file});
  ASSERT_EQ(first.exit_code, 0) << first.err;

  // One reader, open before the import starts, asks for the newest record id:
  // cheap enough to see the first batch's commit well inside the next batch.
  auto watcher = store::Store::open_read_only(db);
  ASSERT_TRUE(watcher) << watcher.error();
  auto newest = watcher->db().prepare("SELECT coalesce(max(id), 0) FROM records");
  ASSERT_TRUE(newest);
  ASSERT_TRUE(newest->step().value());
  int64_t before = newest->int64(0);
  newest->reset();
  int pid = test::spawn_mitmwatch({"import", "--db", db, "--quiet", "--batch", "200", big}, dir_.file("import.log"));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    bool row = newest->step().value_or(false);
    int64_t id = row ? newest->int64(0) : 0;
    newest->reset();
    if (id > before) break;  // a batch committed: kill the import in its next one
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the import finished before it could be killed";

  auto st = store::Store::open(db);  // recovers the WAL as any next user does
  ASSERT_TRUE(st) << st.error();
  auto check = st->db().prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check && check->step().value());
  EXPECT_EQ(check->text(0), "ok");
  auto runs = st->runs().value();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].status, "imported");
  EXPECT_EQ(runs[0].records, 24);
  EXPECT_EQ(as_set(exported(db, runs[0].id)), as_set(records_of(file)));
  // The killed run holds whole batches only, and its summary agrees with its records.
  auto q = st->db().prepare("SELECT count(*) FROM records WHERE run_id = ?1");
  ASSERT_TRUE(q);
  q->bind(1, runs[1].id);
  ASSERT_TRUE(q->step().value());
  int64_t kept = q->int64(0);
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, big_lines);
  EXPECT_EQ(kept % 200, 0);
  EXPECT_EQ(runs[1].records, kept);
  EXPECT_EQ(runs[1].status, "running");

  auto again = test::run_mitmwatch({"import", "--db", db, big}, "", std::chrono::seconds(120));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find(std::to_string(big_lines - kept) + " records new, " + std::to_string(kept) + " already"),
            std::string::npos)
      << again.err;
  auto after = store::Store::open_read_only(db).value().runs().value();
  EXPECT_EQ(after[1].records, big_lines);
  EXPECT_EQ(after[1].status, "imported");
}

TEST_F(StoreTest, AKilledScanWithDbResumesWithTheStoreHoldingExactlyItsFile) {
  // Slow sites (silent to the trigger) make the scan last long enough to be killed midway.
  std::vector<lab::Listener> listeners;
  for (int i = 0; i < 30; ++i) {
    auto name = "slow" + std::to_string(i) + ".example";
    listeners.push_back({{*net::IpAddress::parse("127.91.1." + std::to_string(i + 1)), 0},
                         i % 3 == 0 ? world_->blocking_site(name, lab::SniAction::silent) : world_->clean_site(name)});
  }
  auto slow = lab::TlsServer::start(std::move(listeners), {});
  ASSERT_TRUE(slow) << slow.error();
  std::string lines;
  for (const auto& e : (*slow)->endpoints()) lines += e.to_string() + "\n";
  test::write_file(dir_.file("slow.txt"), lines);
  auto out = dir_.file("slow.jsonl");
  auto db = dir_.file("live.db");
  std::vector<std::string> args{"scan", "--allow-private", "--ca-file", dir_.file("root.pem"), "--quiet", "-i",
                                dir_.file("slow.txt"), "--sni", "facebook.com,google.com", "--concurrency", "3",
                                "--retries", "1", "--handshake-timeout", "0.4", "-o", out, "--db", db};
  auto before = test::kill_nine_after_lines(args, out, 10, dir_.file("first.log"));
  ASSERT_GE(before, 10u) << test::read_file(dir_.file("first.log"));
  ASSERT_LT(before, 60u) << "the scan finished before it could be killed";

  args.push_back("--resume");
  auto r = test::run_mitmwatch(args, "", std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto written = records_of(out);
  ASSERT_EQ(written.size(), 60u);
  auto st = store::Store::open_read_only(db);
  ASSERT_TRUE(st);
  auto runs = st->runs().value();
  ASSERT_EQ(runs.size(), 1u) << "the resumed scan is the same run";
  EXPECT_EQ(runs[0].status, "complete");
  EXPECT_EQ(runs[0].records, 60);
  EXPECT_EQ(as_set(exported(db, runs[0].id)), as_set(written));
}

TEST_F(StoreTest, TheReportDrawsWhatTheStoreHolds) {
  auto db = dir_.file("r.db");
  auto file = scan("scan.jsonl", {"--db", db, "--vantage", "lab-outside"});
  std::map<std::string, int> intercepted;
  std::string issuer;
  for (const auto& r : records_of(file))
    if (r["verdict"] == "intercepted") {
      ++intercepted[r["sni"].get<std::string>()];
      for (const auto& a : r["attempts"])
        if (a["role"] == "test" && a["leaf"].is_object() && a["trusted"] == false) issuer = a["leaf"]["issuer"];
    }
  ASSERT_FALSE(issuer.empty());
  auto html_path = dir_.file("r.html");
  auto h = test::run_mitmwatch({"report", "--db", db, "--ca-file", dir_.file("root.pem"), "-o", html_path});
  ASSERT_EQ(h.exit_code, 0) << h.err;
  auto html = test::read_file(html_path);
  EXPECT_EQ(html.rfind("<!doctype html>", 0), 0u);
  EXPECT_EQ(html.find("<script"), std::string::npos) << "self-contained, no scripts";
  EXPECT_EQ(html.find("src="), std::string::npos) << "nothing loaded from elsewhere";
  EXPECT_EQ(html.find("<link"), std::string::npos);
  size_t svgs = 0;
  for (size_t p = 0; (p = html.find("<svg", p)) != std::string::npos; ++p) ++svgs;
  EXPECT_EQ(svgs, 4u);
  EXPECT_NE(html.find("lab-outside"), std::string::npos);
  EXPECT_NE(html.find(issuer), std::string::npos);
  for (const auto& [sni, n] : intercepted)
    EXPECT_NE(html.find("<td>" + sni + "</td><td>lab-outside</td><td>12</td><td>" + std::to_string(n) + "</td>"),
              std::string::npos)
        << sni;
  EXPECT_NE(html.find("key RSA 2048 e=3"), std::string::npos) << "the stand-in's recipe";

  auto md_path = dir_.file("r.md");
  auto m = test::run_mitmwatch({"report", "--db", db, "-o", md_path});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  auto md = test::read_file(md_path);
  for (const char* fig : {"share", "hops", "domains", "issuers"}) {
    EXPECT_NE(md.find(std::string("(r-") + fig + ".svg)"), std::string::npos) << fig;
    EXPECT_EQ(test::read_file(dir_.file(std::string("r-") + fig + ".svg")).rfind("<svg", 0), 0u) << fig;
  }
}

TEST_F(StoreTest, TheDemoKeepsItsScanInTheStoreToo) {
  auto db = dir_.file("demo.db");
  auto r = test::run_mitmwatch({"demo", "-o", dir_.file("demo.jsonl"), "--db", db, "--vantage", "demo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto written = records_of(dir_.file("demo.jsonl"));
  auto runs = store::Store::open_read_only(db).value().runs().value();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].command, "scan");
  EXPECT_EQ(runs[0].vantage, "demo");
  EXPECT_EQ(runs[0].status, "complete");
  EXPECT_EQ(runs[0].records, static_cast<int64_t>(written.size()));
  EXPECT_EQ(as_set(exported(db, runs[0].id)), as_set(written));
}
