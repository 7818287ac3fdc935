// Hostile servers as a lab feature, as root: a prefix whose servers
// misbehave every way the lab knows (garbage, drip, stall, reset,
// never-finish, huge-hello, a 1 MiB chain) beside a prefix of good ones, all
// scanned at full concurrency with both hello engines. Each hostile server
// costs its own records only; the good ones come back clean; the scan's
// memory stays bounded. Skipped when not root.
#include "support/lab_session.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <map>
#include <set>

using namespace mw;

namespace {

constexpr const char* kTopology = R"(
routers = 2
device_after = 0
[[vantages]]
name = "outside"
attach = 1
[[prefixes]]
name = "good"
cidr = "10.74.0.0/24"
servers = 30
untrusted = 0
attach = 2
[[prefixes]]
name = "bad"
cidr = "10.74.1.0/24"
servers = 70
untrusted = 0
attach = 2
hostile = ["garbage", "drip", "stall", "reset", "never-finish", "huge-hello", "huge-chain"]
)";

}  // namespace

TEST(HostileLabTest, EveryKindOfHostileServerCostsItsOwnRecordsOnlyAtFullConcurrency) {
  if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in a quarantine (256 MiB by default) that would
  // count as the scan's own; a small one leaves the bound meaningful.
  std::string asan = getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "";
  setenv("ASAN_OPTIONS", (asan + (asan.empty() ? "" : ":") + "quarantine_size_mb=16").c_str(), 1);
#endif
  test::LabSession lab(kTopology, 'u');
  ASSERT_TRUE(lab.up()) << lab.log();
  auto status = nlohmann::json::parse(test::run_mitmwatch({"lab", "status", "--json", "--name", lab.name()}).out);
  std::map<std::string, std::string> mode;  // address:443 -> hostile mode, or "" for a good server
  std::string targets;
  for (const auto& p : status["prefixes"])
    for (const auto& s : p["servers"]) {
      std::string t = s["address"].get<std::string>() + ":443";
      mode[t] = s.value("hostile", "");
      targets += t + "\n";
    }
  ASSERT_EQ(mode.size(), 100u);
  test::write_file(lab.dir().file("targets.txt"), targets);

  for (const char* hello : {"openssl", "cert-grab"}) {
    SCOPED_TRACE(hello);
    auto out = lab.dir().file(std::string(hello) + ".jsonl");
    auto r = lab.in("outside", {"scan", "--allow-private", "--quiet", "--ca-file", lab.ca(), "--hello", hello, "--rate",
                                "0", "--per-target-rate", "0", "--retries", "1", "--connect-timeout", "3",
                                "--handshake-timeout", "3", "-i", lab.dir().file("targets.txt"), "-o", out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto records = test::parse_lines(test::read_file(out));
    ASSERT_EQ(records.size(), 200u) << "two records a target, whatever the target did";
    std::map<std::string, std::set<std::string>> errors;  // mode -> the control's errors
    for (const auto& rec : records) {
      const std::string& m = mode.at(rec["target"].get<std::string>());
      if (m.empty()) {
        EXPECT_EQ(rec["verdict"], "clean") << rec.dump();
        continue;
      }
      EXPECT_EQ(rec["verdict"], "unreachable") << m << ": " << rec["reasons"].dump();
      const auto& control = rec["attempts"][0];
      errors[m].insert(control["error"].is_string() ? control["error"].get<std::string>() : "none");
    }
    auto only = [&](const std::string& m, std::set<std::string> expected) { EXPECT_EQ(errors[m], expected) << m; };
    only("reset", {"reset"});
    for (const char* slow : {"drip", "stall", "never-finish"}) only(slow, {"handshake-timeout"});
    // Refused at once, not waited for: bytes that are not TLS, a ServerHello
    // announcing 16 MiB, a Certificate message of 1 MiB.
    for (const char* refused : {"garbage", "huge-hello", "huge-chain"}) only(refused, {"protocol-error"});
    // 1000 handshakes in flight at most, a chain of 1 MiB from ten servers, floods
    // of 16 MiB announced: the scanner's buffers are bounded.
    // Under ASan its shadow memory and allocator caches come on top (about
    // 160 MiB here with a small quarantine, against 20-30 MiB in Release).
#if defined(__SANITIZE_ADDRESS__)
    constexpr long kMaxRssKb = 320 * 1024;
#else
    constexpr long kMaxRssKb = 200 * 1024;
#endif
    EXPECT_LT(r.max_rss_kb, kMaxRssKb) << "peak RSS " << r.max_rss_kb << " KiB";
    fmt::print(stderr, "{}: peak RSS {} KiB; hostile errors:", hello, r.max_rss_kb);
    for (const auto& [m, e] : errors) fmt::print(stderr, " {}={}", m, fmt::join(e, "|"));
    fmt::print(stderr, "\n");
  }
}
