// The store on both backends, and the fleet's job queue on both: a real
// PostgreSQL server of the test's own (support/postgres.hpp) and SQLite files.
// Records come from real scans of real TLS servers (`mitmwatch demo`).
#include "fleet/queue.hpp"
#include "store/import.hpp"
#include "store/migrations.hpp"
#include "store/views.hpp"
#include "support/postgres.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace mw;

namespace {

test::PostgresServer* g_postgres = nullptr;
std::string g_postgres_error;
int g_databases = 0;

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { g_postgres = test::PostgresServer::start(g_postgres_error).release(); }
  void TearDown() override {
    delete g_postgres;
    g_postgres = nullptr;
  }
};
const auto* const g_environment = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

// A fresh empty store of the given backend.
class Backend : public ::testing::TestWithParam<store::Dialect> {
 protected:
  void SetUp() override {
    if (GetParam() == store::Dialect::postgresql) {
      ASSERT_NE(g_postgres, nullptr) << "PostgreSQL: " << g_postgres_error;
      where_ = g_postgres->create_database("mw" + std::to_string(++g_databases));
    } else {
      where_ = dir_.file("store.db");
    }
  }
  store::Store open() {
    auto s = store::Store::open(where_);
    EXPECT_TRUE(s) << s.error();
    return std::move(*s);
  }
  // Records of a real scan: the demo's TLS servers on 127.77.0.0/16, some behind a stand-in interceptor.
  std::string demo_scan(const std::string& name) {
    auto out = dir_.file(name);
    auto r = test::run_mitmwatch({"demo", "--servers", "12", "-o", out});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out;
  }
  std::string where_;
  test::TempDir dir_;
};

std::string name_of(const ::testing::TestParamInfo<store::Dialect>& p) {
  return p.param == store::Dialect::sqlite ? "SQLite" : "PostgreSQL";
}

fleet::CampaignSpec spec(const std::string& name, int64_t shards, int64_t lease_ms = 60000, int64_t attempts = 3) {
  fleet::CampaignSpec s;
  s.name = name;
  s.targets = "192.0.2.1\n192.0.2.2\n";
  s.snis = {"facebook.com"};
  s.vantages = {"outside"};
  s.shards = shards;
  s.lease_ms = lease_ms;
  s.max_attempts = attempts;
  return s;
}

// Completes `job` as an agent does: inside a write transaction, only while the claim is its own.
bool complete(store::Store& s, const fleet::Job& job) {
  auto tx = s.transaction();
  EXPECT_TRUE(tx) << tx.error();
  auto ours = fleet::lock_if_claimed(s, job);
  EXPECT_TRUE(ours) << ours.error();
  if (!*ours) return false;
  EXPECT_TRUE(fleet::mark_done(s, job, {}));
  auto ok = tx->commit();
  EXPECT_TRUE(ok) << ok.error();
  return true;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Store, Backend, ::testing::Values(store::Dialect::sqlite, store::Dialect::postgresql), name_of);

TEST_P(Backend, AFreshStoreIsAtTheLatestSchemaAndReopensWithoutChange) {
  {
    auto s = open();
    EXPECT_EQ(store::schema_version(s.db()).value(), store::latest_schema_version());
    EXPECT_EQ(s.dialect(), GetParam());
    EXPECT_EQ(s.count("jobs").value(), 0);
  }
  auto again = open();
  EXPECT_EQ(store::schema_version(again.db()).value(), store::latest_schema_version());
  auto ro = store::Store::open_read_only(where_);
  ASSERT_TRUE(ro) << ro.error();
}

TEST_P(Backend, AStoreOfAnEarlierVersionIsMigratedAndOneOfALaterVersionRefused) {
  {
    // A store as version 1 left it: its schema, a run, and meta at 1.
    auto db = store::Database::open(where_).value();
    ASSERT_TRUE(db.exec(std::string(store::migrations(db.dialect())[0].sql)));
    ASSERT_TRUE(db.exec("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"));
    ASSERT_TRUE(db.exec("INSERT INTO meta VALUES('schema_version', '1')"));
    ASSERT_TRUE(db.exec("INSERT INTO runs(uid, command, vantage, tool_version) VALUES('sha256:x', 'scan', 'old', '0.0')"));
  }
  {
    auto s = open();
    EXPECT_EQ(store::schema_version(s.db()).value(), 2);
    EXPECT_EQ(s.runs().value().size(), 1u) << "the old run survives";
    EXPECT_EQ(s.count("campaigns").value(), 0);
    ASSERT_TRUE(s.db().exec("UPDATE meta SET value = '99' WHERE key = 'schema_version'"));
  }
  auto newer = store::Store::open(where_);
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.error().find("store schema version 99 (this mitmwatch reads up to 2)"), std::string::npos)
      << newer.error();
}

TEST_P(Backend, AnImportedScanExportsExactlyAndAReimportAddsNothing) {
  auto file = demo_scan("scan.jsonl");
  auto written = test::read_lines(file);
  ASSERT_EQ(written.size(), 24u);
  auto s = open();
  store::RunInfo info;
  info.vantage = "here";
  auto first = store::import_jsonl(s, file, info, {}, 7);  // batches of 7: several flushes
  ASSERT_TRUE(first) << first.error();
  EXPECT_EQ(first->added, 24u);
  EXPECT_EQ(first->already, 0u);
  std::multiset<std::string> exported;
  ASSERT_TRUE(s.for_each_record(first->run_id, [&](const store::Json& r) { exported.insert(r.dump()); }));
  std::multiset<std::string> expected;
  for (const auto& line : written) expected.insert(store::Json::parse(line).dump());
  EXPECT_EQ(exported, expected) << "chains restored byte for byte";
  auto again = store::import_jsonl(s, file, info);
  ASSERT_TRUE(again) << again.error();
  EXPECT_EQ(again->added, 0u);
  EXPECT_EQ(again->already, 24u);
  auto run = s.run(first->run_id).value().value();
  EXPECT_EQ(run.records, 24);
  EXPECT_EQ(run.status, "imported");
  std::map<std::string, int64_t> verdicts;
  for (const auto& line : written) ++verdicts[store::Json::parse(line)["verdict"].get<std::string>()];
  EXPECT_EQ(run.intercepted, verdicts["intercepted"]);
  EXPECT_EQ(run.unreachable, verdicts["unreachable"]);
  EXPECT_GT(run.intercepted, 0);
}

TEST_P(Backend, ARolledBackTransactionLeavesNothingAndForgetsItsCertificates) {
  auto file = demo_scan("scan.jsonl");
  auto s = open();
  store::RunInfo info;
  info.vantage = "here";
  {
    auto tx = s.transaction();
    ASSERT_TRUE(tx);
    auto staged = store::import_jsonl(s, file, info, {}, 5, &*tx);
    ASSERT_TRUE(staged) << staged.error();
    EXPECT_EQ(staged->added, 24u) << "flushed into the open transaction";
  }  // not committed
  EXPECT_EQ(s.count("records").value(), 0);
  EXPECT_EQ(s.count("certificates").value(), 0);
  EXPECT_EQ(s.count("runs").value(), 0);
  // The same store object imports again: the certificates it had written
  // (and rolled back) must be written again, or the chains could not come back.
  auto stats = store::import_jsonl(s, file, info);
  ASSERT_TRUE(stats) << stats.error();
  EXPECT_EQ(stats->added, 24u);
  size_t n = 0;
  auto ok = s.for_each_record(stats->run_id, [&](const store::Json&) { ++n; });
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(n, 24u);
}

// Found by libFuzzer (fuzz/corpus/store_import/regression-started-ms-past-int64-*):
// a record's time as a number no int64_t holds was converted anyway (undefined).
TEST_P(Backend, TimesNoIntegerHoldsAreStoredWithoutATime) {
  auto lines = test::read_lines(demo_scan("scan.jsonl"));
  ASSERT_GE(lines.size(), 3u);
  const std::vector<store::Json> huge = {store::Json(1.79641776039296e23), store::Json(18446744073709551615ull),
                                         store::Json(-1e300)};
  std::string text;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto r = store::Json::parse(lines[i]);
    if (i < huge.size()) r["attempts"][0]["started_ms"] = huge[i];
    text += r.dump() + "\n";
  }
  auto file = dir_.file("huge.jsonl");
  test::write_file(file, text);
  auto s = open();
  auto stats = store::import_jsonl(s, file, store::RunInfo{});
  ASSERT_TRUE(stats) << stats.error();
  EXPECT_EQ(stats->added, lines.size());
  auto q = s.db().prepare("SELECT count(*) FROM records WHERE observed_ms IS NULL");
  ASSERT_TRUE(q) << q.error();
  ASSERT_TRUE(q->step().value());
  EXPECT_EQ(q->int64(0), static_cast<int64_t>(huge.size()));
  size_t n = 0;
  ASSERT_TRUE(s.for_each_record(stats->run_id, [&](const store::Json&) { ++n; }));
  EXPECT_EQ(n, lines.size()) << "the records themselves are kept whole";
}

TEST(StoreBackends, EveryViewIsTheSameFromSQLiteAndPostgreSQL) {
  ASSERT_NE(g_postgres, nullptr) << g_postgres_error;
  test::TempDir dir;
  std::vector<std::string> files;
  for (const char* name : {"a.jsonl", "b.jsonl"}) {
    files.push_back(dir.file(name));
    auto r = test::run_mitmwatch({"demo", "--servers", "12", "-o", files.back()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::vector<store::Json> views;
  for (const std::string& where : {dir.file("s.db"), g_postgres->create_database("views")}) {
    auto s = store::Store::open(where);
    ASSERT_TRUE(s) << s.error();
    for (size_t i = 0; i < files.size(); ++i) {
      store::RunInfo info;
      info.vantage = i == 0 ? "outside" : "inside";
      ASSERT_TRUE(store::import_jsonl(*s, files[i], info));
    }
    store::Json v;
    v["overview"] = store::overview(*s).value();
    v["series"] = store::series_points(*s).value();
    v["domains"] = store::domains(*s).value();
    v["servers"] = store::servers(*s).value();
    v["issuers"] = store::issuers(*s).value();
    v["hops"] = store::hop_pairs(*s).value();
    v["compare"] = store::compare_vantages(*s).value();
    views.push_back(std::move(v));
  }
  EXPECT_EQ(views[0]["compare"]["vantages"].size(), 2u);
  EXPECT_GT(views[0]["issuers"].size(), 0u);
  for (const auto& [key, value] : views[0].items()) EXPECT_EQ(value, views[1][key]) << key;
}

TEST_P(Backend, CampaignsMakeAJobPerVantageAndShardAndRefuseBadSpecs) {
  auto s = open();
  auto sp = spec("kz", 4);
  sp.vantages = {"outside", "inside"};
  auto c = fleet::create_campaign(s, sp);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(s.count("jobs").value(), 8);
  EXPECT_EQ(c->target_lines, 2);
  auto again = fleet::create_campaign(s, sp);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().find("campaign 'kz' exists already"), std::string::npos);
  auto found = fleet::find_campaign(s, "kz").value().value();
  EXPECT_EQ(found.spec.vantages, sp.vantages);
  EXPECT_EQ(found.spec.snis, sp.snis);

  auto bad = [&](auto change, const std::string& says) {
    auto b = spec("other", 1);
    change(b);
    auto r = fleet::create_campaign(s, b);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find(says), std::string::npos) << r.error();
  };
  bad([](auto& b) { b.name = "a b"; }, "campaign name 'a b'");
  bad([](auto& b) { b.targets = "# only a comment\n\n"; }, "holds no target");
  bad([](auto& b) { b.vantages = {"x", "x"}; }, "vantage 'x' is named twice");
  bad([](auto& b) { b.args = {"--db=elsewhere.db"}; }, "scan flag --db: the agent sets it");
  bad([](auto& b) { b.lease_ms = 10; }, "a lease of 10 ms");
  bad([](auto& b) { b.shards = 0; }, "0 shards");
}

TEST_P(Backend, EightAgentsClaimEveryJobExactlyOnce) {
  {
    auto s = open();
    ASSERT_TRUE(fleet::create_campaign(s, spec("many", 120)));
  }
  std::mutex m;
  std::multiset<int64_t> done;
  std::vector<std::string> errors;
  std::vector<std::thread> agents;
  for (int a = 0; a < 8; ++a)
    agents.emplace_back([&, a] {
      auto s = store::Store::open(where_);
      if (!s) {
        std::lock_guard lock(m);
        errors.push_back(s.error());
        return;
      }
      for (;;) {
        auto job = fleet::claim(*s, "agent" + std::to_string(a), "outside");
        if (!job) {  // SQLite answers a busy writer after its timeout; not expected here
          std::lock_guard lock(m);
          errors.push_back(job.error());
          return;
        }
        if (!*job) return;
        bool ours = complete(*s, **job);
        std::lock_guard lock(m);
        if (ours) done.insert((*job)->id);
      }
    });
  for (auto& t : agents) t.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(done.size(), 120u);
  EXPECT_EQ(std::set<int64_t>(done.begin(), done.end()).size(), 120u) << "no job done twice";
  auto s = open();
  auto c = fleet::find_campaign(s, "many").value().value();
  auto status = fleet::campaign_status(s, c).value();
  EXPECT_EQ(status["jobs"]["done"], 120);
  EXPECT_TRUE(status["complete"].get<bool>());
}

TEST_P(Backend, ALapsedLeaseGivesTheJobToAnotherAgentAndTheStaleClaimCannotComplete) {
  auto s = open();
  ASSERT_TRUE(fleet::create_campaign(s, spec("lease", 1, 1000)));
  auto a = fleet::claim(s, "a", "outside").value().value();
  EXPECT_EQ(a.attempts, 1);
  EXPECT_FALSE(fleet::claim(s, "b", "outside").value()) << "held under a live lease";
  EXPECT_TRUE(fleet::heartbeat(s, a).value());
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  auto b = fleet::claim(s, "b", "outside").value().value();
  EXPECT_EQ(b.id, a.id);
  EXPECT_EQ(b.attempts, 2);
  EXPECT_FALSE(fleet::heartbeat(s, a).value()) << "a's claim is over";
  EXPECT_FALSE(complete(s, a)) << "a stale claim stores nothing";
  EXPECT_TRUE(complete(s, b));
  EXPECT_FALSE(fleet::has_open_jobs(s, "outside").value());
}

TEST_P(Backend, AJobIsFailedAfterItsLastAttemptAndAStoppedAgentsClaimDoesNotCount) {
  auto s = open();
  ASSERT_TRUE(fleet::create_campaign(s, spec("tries", 1, 1000, 2)));
  auto first = fleet::claim(s, "a", "outside").value().value();
  // Given back by an agent told to stop: not an attempt.
  ASSERT_TRUE(fleet::release(s, first, "its agent was stopped", false));
  auto second = fleet::claim(s, "a", "outside").value().value();
  EXPECT_EQ(second.attempts, 1);
  ASSERT_TRUE(fleet::release(s, second, "scan exited 1: boom"));
  auto third = fleet::claim(s, "b", "outside").value().value();
  EXPECT_EQ(third.attempts, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));  // b dies: its lease lapses on the last attempt
  EXPECT_FALSE(fleet::claim(s, "c", "outside").value());
  auto c = fleet::find_campaign(s, "tries").value().value();
  auto status = fleet::campaign_status(s, c).value();
  EXPECT_EQ(status["jobs"]["failed"], 1);
  ASSERT_EQ(status["failed"].size(), 1u);
  EXPECT_EQ(status["failed"][0]["error"], "the lease of attempt 2 ran out (agent b)");
  EXPECT_TRUE(status["complete"].get<bool>());
}

TEST(FleetCli, BadInputIsNamedAndExitsTwo) {
  test::TempDir dir;
  auto db = dir.file("f.db");
  test::write_file(dir.file("t.txt"), "192.0.2.1\n");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases{
      {{"campaign", "create", "x", "--db", db, "-i", dir.file("none.txt"), "--vantages", "a"}, "-i " + dir.file("none.txt")},
      {{"campaign", "create", "x", "--db", db, "-i", dir.file("t.txt"), "--vantages", "a,a"}, "vantage 'a' is named twice"},
      {{"campaign", "create", "x", "--db", db, "-i", dir.file("t.txt"), "--vantages", "a", "--lease", "soon"}, "--lease"},
      {{"campaign", "create", "x", "--db", db, "-i", dir.file("t.txt"), "--vantages", "a", "--", "-o", "f"},
       "scan flag -o: the agent sets it"},
      {{"campaign", "status", "nope", "--db", db}, "no campaign 'nope'"},
      {{"agent", "--db", db}, "--vantage is required"},
      {{"agent", "--db", db, "--vantage", "a", "--campaign", "nope"}, "no campaign 'nope'"},
      {{"campaign", "status", "--db", "postgresql:///x?host=/nonexistent-mw"}, "cannot connect"},
  };
  for (const auto& c : cases) {
    auto r = test::run_mitmwatch(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args[1];
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.says << " in: " << r.err;
  }
}
