// sweep in the lab, as root: for each matching configuration of the
// interception device, `sweep --infer-rule` states exactly that
// configuration; a 1,000-domain sweep finds exactly the report's 37
// triggers. Skipped when not root.
#include "lab/stand_in.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <random>
#include <set>

using namespace mw;

namespace {

std::string lab_name() { return "w" + std::to_string(getpid() % 100000); }

std::string lab_toml(const std::string& name, const std::string& device) {
  return "name = \"" + name + "\"\nrouters = 4\ndevice_after = 2\n[device]\n" + device + R"(
[[vantages]]
name = "outside"
attach = 1
[[prefixes]]
name = "core"
cidr = "10.70.0.0/24"
servers = 2
untrusted = 0
attach = 4
)";
}

// A lab with this device configuration, taken down when the test ends, however it ends.
class SweepLab {
 public:
  explicit SweepLab(const std::string& device) : name_(lab_name()) {
    test::write_file(dir_.file("lab.toml"), lab_toml(name_, device));
    auto r = test::run_mitmwatch({"lab", "up", "--config", dir_.file("lab.toml")}, "", std::chrono::seconds(120));
    up_ = r.exit_code == 0;
    log_ = r.err;
  }
  ~SweepLab() { test::run_mitmwatch({"lab", "down", "--name", name_}); }
  bool up() const { return up_; }
  const std::string& log() const { return log_; }
  test::TempDir& dir() { return dir_; }

  test::RunResult sweep(std::vector<std::string> extra) {
    std::vector<std::string> args{"lab", "exec", "--name", name_, "outside", "--", MW_BINARY, "sweep",
                                  "--allow-private", "-q", "--rate", "0", "--per-target-rate", "0", "--ca-file", "/run/mitmwatch-lab/" + name_ + "/public-root.pem",
                                  "--handshake-timeout", "5", "10.70.0.1", "10.70.0.2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_mitmwatch(args, "", std::chrono::seconds(300));
  }

  // The rule record of an --infer-rule sweep over two triggers and a name that is none.
  nlohmann::json inferred_rule() {
    auto r = sweep({"--infer-rule", "--domain", "facebook.com", "--domain", "vk.me", "--domain", "kaspi.kz"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const auto& line : test::parse_lines(r.out))
      if (line.value("schema", "") == "mitmwatch.sweep-rule/1") return line;
    ADD_FAILURE() << "no rule record; stderr: " << r.err;
    return {};
  }

 private:
  test::TempDir dir_;
  std::string name_;
  bool up_ = false;
  std::string log_;
};

class SweepLabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  }
};

struct Expected {
  std::string device_toml;
  std::string match;
  bool case_insensitive;
  std::string sni_entry;
  bool reassembles_segments;
  bool reassembles_records;
};

void expect_rule(const Expected& e) {
  SweepLab lab(e.device_toml);
  ASSERT_TRUE(lab.up()) << lab.log();
  auto rec = lab.inferred_rule();
  ASSERT_TRUE(rec.contains("rule")) << rec.dump();
  const auto& rule = rec["rule"];
  SCOPED_TRACE(e.device_toml + "\n" + rec["words"].get<std::string>());
  EXPECT_EQ(rule["match"], e.match);
  EXPECT_EQ(rule["sni_entry"], e.sni_entry);
  EXPECT_EQ(rule["facts"]["case_insensitive"], e.case_insensitive);
  EXPECT_EQ(rule["facts"]["reassembles_segments"], e.reassembles_segments);
  EXPECT_EQ(rule["facts"]["reassembles_records"], e.reassembles_records);
  // What no configuration changes: no SNI, no interception.
  EXPECT_EQ(rule["facts"]["no_sni"], false);
  EXPECT_EQ(rule["facts"]["empty_sni"], false);
  // Both triggers decided it; the non-trigger was never swept into variants.
  EXPECT_EQ(rec["decided_by"], (nlohmann::json{"facebook.com", "vk.me"}));
}

}  // namespace

TEST_F(SweepLabTest, InfersThe2019Rule) {
  expect_rule({"", "subdomains", true, "first", false, false});
}

TEST_F(SweepLabTest, InfersExactCaseSensitiveLastEntry) {
  expect_rule({"match = \"exact\"\ncase_sensitive = true\nsni_entry = \"last\"", "exact", false, "last", false, false});
}

TEST_F(SweepLabTest, InfersSuffixThatReassemblesSegments) {
  expect_rule({"match = \"suffix\"\nreassemble = [\"segments\"]", "suffix", true, "first", true, false});
}

TEST_F(SweepLabTest, InfersSubstringThatReassemblesRecordsOnly) {
  expect_rule({"match = \"substring\"\nreassemble = [\"records\"]", "substring", true, "first", false, true});
}

TEST_F(SweepLabTest, InfersExactThatReassemblesEverything) {
  expect_rule({"match = \"exact\"\nreassemble = [\"segments\", \"records\"]\nsni_entry = \"last\"", "exact", true,
               "last", true, true});
}

TEST_F(SweepLabTest, AThousandDomainsGiveExactlyTheReportsTriggers) {
  SweepLab lab("");
  ASSERT_TRUE(lab.up()) << lab.log();
  std::set<std::string> domains(lab::kKz2019Triggers.begin(), lab::kKz2019Triggers.end());
  // Names that are no trigger, some close to one (mail.kz, not mail.ru; vk.co).
  const char* words[] = {"shop", "news", "bank", "mail", "cloud", "video", "city", "kino", "vk", "ok"};
  const char* tlds[] = {"kz", "com", "org", "net", "co", "io"};
  std::mt19937 rng(2019);
  while (domains.size() < 1000)
    domains.insert(std::string(words[rng() % 10]) + std::to_string(rng() % 500) + "." + tlds[rng() % 6]);
  std::vector<std::string> shuffled(domains.begin(), domains.end());
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  std::string list;
  for (const auto& d : shuffled) list += d + "\n";
  test::write_file(lab.dir().file("domains.txt"), list);
  auto out = lab.dir().file("sweep.jsonl"), triggers = lab.dir().file("triggers.txt");
  auto r = lab.sweep({"--domains", lab.dir().file("domains.txt"), "--triggers-out", triggers, "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> want(lab::kKz2019Triggers.begin(), lab::kKz2019Triggers.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(test::read_lines(triggers), want);
  auto records = test::parse_lines(test::read_file(out));
  EXPECT_EQ(records.size(), 2000u);  // one per (domain, server)
  size_t intercepted = 0;
  for (const auto& rec : records) {
    EXPECT_EQ(rec["schema"], "mitmwatch.sweep/1");
    if (rec["verdict"] == "intercepted") ++intercepted;
    else EXPECT_EQ(rec["verdict"], "clean") << rec.dump();
  }
  EXPECT_EQ(intercepted, 74u);  // 37 triggers on both servers
}

TEST_F(SweepLabTest, AKilledSweepResumes) {
  SweepLab lab("");
  ASSERT_TRUE(lab.up()) << lab.log();
  auto out = lab.dir().file("sweep.jsonl");
  auto first = lab.sweep({"--domain", "facebook.com", "--domain", "kaspi.kz", "-o", out});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  // Cut the file as a kill mid-write would: one whole record and a torn one.
  auto lines = test::read_lines(out);
  ASSERT_EQ(lines.size(), 4u);
  test::write_file(out, lines[0] + "\n" + lines[1].substr(0, 20));
  auto again = lab.sweep({"--domain", "facebook.com", "--domain", "kaspi.kz", "-o", out, "--resume"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto records = test::parse_lines(test::read_file(out));
  ASSERT_EQ(records.size(), 4u);
  std::set<std::string> keys;
  for (const auto& rec : records) keys.insert(rec["target"].get<std::string>() + " " + rec["domain"].get<std::string>());
  EXPECT_EQ(keys.size(), 4u);
  EXPECT_EQ(records[0].dump(), nlohmann::json::parse(lines[0]).dump());  // what was written stays
}
