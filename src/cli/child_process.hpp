// Running this program (or a hook) as a child: a monitor's rounds and a fleet
// agent's jobs are `mitmwatch scan` and `mitmwatch trace` processes, so every
// flag works as it does alone and a crash costs one round or one job.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace mw::cli {

struct ChildOptions {
  std::string input;  // written to its stdin (none when empty)
  std::chrono::milliseconds limit = std::chrono::hours(24);  // killed after
  std::string output;  // its stdout and stderr go to this file (empty: ours)
  // Called every 20 ms while it runs; returning false kills it.
  std::function<bool()> keep_going;
};

// Runs argv[0] with argv; its exit code, -signal when killed, or -1 when it
// could not start. The child dies with us (PR_SET_PDEATHSIG): a killed
// agent leaves no scan running on its own.
int run_child(const std::vector<std::string>& argv, const ChildOptions& options = {});

// The flags of a scan that a trace of its records needs too: reaching
// private ranges, trusting the same roots, the same control and registry.
std::vector<std::string> trace_args_of(const std::vector<std::string>& scan_args);

}  // namespace mw::cli
