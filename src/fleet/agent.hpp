// `mitmwatch agent`: one vantage's worker in a fleet. It claims a job of its
// vantage, runs it as this program's own `scan` (and `trace` of what the scan
// found intercepted) while renewing the job's lease, and stores the records
// in the same transaction that marks the job done, only if the claim is still
// its own. A killed agent leaves its job to lapse and be claimed again; an
// agent that lost its lease drops its results.
#pragma once

#include "fleet/queue.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

namespace mw::fleet {

struct AgentOptions {
  std::string self;     // this program, run as scan and trace
  std::string db;       // the store's path or postgresql:// URL
  std::string vantage;  // the jobs it takes
  std::string name;     // unique in the fleet
  std::string campaign;  // only this campaign (empty: any)
  bool exit_when_idle = false;  // stop once the vantage has nothing queued or running
  int max_jobs = 0;             // stop after this many (0: no limit)
  std::chrono::milliseconds poll{5000};
  std::string work_dir;  // scratch files of running jobs
  std::function<void(const std::string&)> log = [](const std::string&) {};
  const std::atomic<bool>* stop = nullptr;  // set by a signal: give the job back and leave
};

struct AgentSummary {
  int done = 0, given_back = 0, lost = 0;
  bool stopped = false;  // by `stop`
};

// Runs until stopped, idle (with exit_when_idle) or max_jobs; an error when
// the store cannot be opened or keeps failing.
tl::expected<AgentSummary, Error> run_agent(const AgentOptions& o);

}  // namespace mw::fleet
