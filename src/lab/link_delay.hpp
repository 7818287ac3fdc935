// Per-router link delay for the lab. This kernel has no netem qdisc, so a
// router's outgoing packets go through NFQUEUE to this small process, which
// releases each after a fixed delay: paths get realistic round-trip times
// (a hop farther is a delay more), which the trace benchmark needs.
#pragma once

#include <string>

namespace mw::lab {

inline constexpr int kDelayQueue = 1;

// Runs until SIGTERM/SIGINT; writes `ready_file` once it holds the queue.
int run_link_delay(int delay_ms, const std::string& ready_file);

}  // namespace mw::lab
