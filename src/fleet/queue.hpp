// Campaigns and their jobs, kept in the store so that a fleet of agents (one
// or more per vantage) shares them: a campaign is a target list x test SNIs x
// vantages; its jobs are (vantage, shard) pairs, each the scan's own
// `--shard I/N` of the list, so every target is measured once per vantage.
//
// A job's life: queued -> running (claimed by one agent, under a lease the
// agent renews by heartbeats) -> done, or back to queued when the agent gives
// it up or its lease runs out, or failed after max_attempts claims. An agent
// writes a job's records in the same transaction that marks it done, and only
// while it still holds the claim: a result is stored once or not at all.
//
// Claims use FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the claim's
// BEGIN IMMEDIATE serializes writers, which does the same on one machine.
#pragma once

#include "store/store.hpp"

#include <optional>
#include <string>
#include <vector>

namespace mw::fleet {

using store::Error;
using Json = nlohmann::ordered_json;

struct CampaignSpec {
  std::string name;
  std::string command = "scan";     // what a job runs
  bool trace = false;               // then trace what the scan found intercepted
  std::string targets;              // the target list, as scan -i reads it
  std::vector<std::string> snis;    // the test SNIs
  std::vector<std::string> args;    // further scan flags (--allow-private, --ca-file, --rate ...)
  std::vector<std::string> vantages;
  int64_t shards = 1;               // jobs per vantage
  int64_t lease_ms = 120000;        // a claim lapses this long after its last heartbeat
  int64_t max_attempts = 3;         // claims before a job is failed
};

struct Campaign {
  int64_t id = 0;
  CampaignSpec spec;
  int64_t target_lines = 0;
  int64_t created_ms = 0;
};

// Lines of a target list that name targets (not blank, not only a # comment).
int64_t count_target_lines(const std::string& targets);
// Checks the spec (names, counts, flags the agent sets itself); the error says which.
tl::expected<void, Error> check_spec(const CampaignSpec& spec);
// Creates the campaign and its vantages x shards jobs in one transaction.
tl::expected<Campaign, Error> create_campaign(store::Store& s, const CampaignSpec& spec);
tl::expected<std::optional<Campaign>, Error> find_campaign(store::Store& s, const std::string& name);
tl::expected<std::optional<Campaign>, Error> campaign_by_id(store::Store& s, int64_t id);
tl::expected<std::vector<Campaign>, Error> campaigns(store::Store& s);

struct Job {
  int64_t id = 0;
  int64_t campaign_id = 0;
  std::string vantage;
  int64_t shard = 0;
  int64_t attempts = 0;  // claims so far, this one included
  std::string claim;     // this claim's token
};

struct AgentInfo {
  std::string name, vantage, host;
  int64_t pid = 0;
};
// Says the agent is here (state "idle"), or updates it: "idle", "working", "stopped".
tl::expected<void, Error> agent_seen(store::Store& s, const AgentInfo& a, const std::string& state,
                                     std::optional<int64_t> job = std::nullopt, bool job_done = false);

// Claims the oldest claimable job of `vantage` (of campaign `campaign_id`
// only, when not 0): queued, or running with its lease run out. Jobs whose
// lease ran out on their last attempt become failed first.
tl::expected<std::optional<Job>, Error> claim(store::Store& s, const std::string& agent, const std::string& vantage,
                                              int64_t campaign_id = 0);
// Renews the lease: false when the job is no longer this claim's.
tl::expected<bool, Error> heartbeat(store::Store& s, const Job& job);
// Gives the job up: queued again, or failed when `count_attempt` and it has
// had its max_attempts. `count_attempt` false (an agent told to stop): the
// claim does not count.
tl::expected<void, Error> release(store::Store& s, const Job& job, const std::string& error, bool count_attempt = true);
// Inside the caller's write transaction: takes the job's row lock and says
// whether the job is still this claim's. The caller then writes the results
// and mark_done, and commits; or rolls back when it is not.
tl::expected<bool, Error> lock_if_claimed(store::Store& s, const Job& job);
struct JobResult {
  std::optional<int64_t> scan_run, trace_run;
  int64_t records = 0, intercepted = 0;
};
tl::expected<void, Error> mark_done(store::Store& s, const Job& job, const JobResult& result);
// Whether `vantage` has work that is queued or running (another agent's lease may lapse).
tl::expected<bool, Error> has_open_jobs(store::Store& s, const std::string& vantage, int64_t campaign_id = 0);

// Jobs by state, per vantage (records, intercepted, share), agents, failures.
tl::expected<Json, Error> campaign_status(store::Store& s, const Campaign& c);
// The runs holding the campaign's results, in (vantage, shard) order: scans, then traces.
tl::expected<std::vector<int64_t>, Error> result_runs(store::Store& s, const Campaign& c, const std::string& vantage = "",
                                                      const std::string& kind = "");

}  // namespace mw::fleet
