// How fast a fleet's agents get work: N agent processes, each with its own
// connection, claim and complete empty jobs (the agent's own SQL: claim,
// lock_if_claimed, mark_done, commit) until a campaign of J jobs is done.
// Prints jobs/s overall and the claim latency (median, p99) as one JSON line.
//
// usage: mw-bench-fleet-claims STORE AGENTS JOBS
#include "fleet/queue.hpp"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

using namespace mw;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc != 4) {
    fmt::print(stderr, "usage: {} STORE AGENTS JOBS\n", argv[0]);
    return 2;
  }
  std::string where = argv[1];
  int agents = std::atoi(argv[2]);
  int64_t jobs = std::atoll(argv[3]);
  {
    auto s = store::Store::open(where);
    if (!s) {
      fmt::print(stderr, "{}\n", s.error());
      return 1;
    }
    fleet::CampaignSpec spec;
    spec.name = fmt::format("bench-{}", getpid());
    spec.targets = "192.0.2.1\n";
    spec.snis = {"facebook.com"};
    spec.vantages = {"bench"};
    spec.shards = jobs;
    auto c = fleet::create_campaign(*s, spec);
    if (!c) {
      fmt::print(stderr, "{}\n", c.error());
      return 1;
    }
  }
  int pipes[2];
  if (pipe(pipes) != 0) return 1;
  auto t0 = Clock::now();
  for (int a = 0; a < agents; ++a) {
    if (fork() != 0) continue;
    close(pipes[0]);
    auto s = store::Store::open(where);
    if (!s) _exit(1);
    std::vector<double> claim_ms;
    int busy = 0;
    for (;;) {
      auto c0 = Clock::now();
      auto job = fleet::claim(*s, fmt::format("agent-{}", a), "bench");
      claim_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - c0).count());
      if (!job && job.error().find("locked") != std::string::npos && ++busy < 100) continue;  // SQLite: a writer waited too long
      if (!job) {
        fmt::print(stderr, "agent {}: {}\n", a, job.error());
        _exit(1);
      }
      if (!*job) break;
      for (;;) {  // SQLite may answer "locked" when a writer waited past its busy timeout: again
        auto tx = s->transaction();
        if (!tx && tx.error().find("locked") != std::string::npos && ++busy < 100) continue;
        if (!tx || !fleet::lock_if_claimed(*s, **job).value_or(false) || !fleet::mark_done(*s, **job, {}) || !tx->commit()) {
          fmt::print(stderr, "agent {}: completing job {} failed\n", a, (*job)->id);
          _exit(1);
        }
        break;
      }
    }
    if (busy) fmt::print(stderr, "agent {}: {} transactions retried after \"database is locked\"\n", a, busy);
    // Each agent's claim latencies, as text, to the parent.
    std::string text;
    for (double ms : claim_ms) text += fmt::format("{:.4f}\n", ms);
    size_t off = 0;
    while (off < text.size()) {
      auto n = write(pipes[1], text.data() + off, text.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(pipes[1]);
  std::vector<double> all;
  FILE* in = fdopen(pipes[0], "r");
  double ms;
  while (std::fscanf(in, "%lf", &ms) == 1) all.push_back(ms);
  int failed = 0;
  for (int a = 0; a < agents; ++a) {
    int status = 0;
    wait(&status);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all.empty() ? 0.0 : all[static_cast<size_t>(p * static_cast<double>(all.size() - 1))]; };
  fmt::print("{{\"store\":\"{}\",\"agents\":{},\"jobs\":{},\"seconds\":{:.3f},\"jobs_per_second\":{:.0f},"
             "\"claim_ms_median\":{:.3f},\"claim_ms_p99\":{:.3f},\"failed_agents\":{}}}\n",
             where.rfind("postgres", 0) == 0 ? "postgresql" : "sqlite", agents, jobs, secs,
             static_cast<double>(jobs) / secs, pct(0.5), pct(0.99), failed);
  return failed ? 1 : 0;
}
