// Change points between monitor rounds: what a researcher watching a network
// wants to be told. Pure functions over round summaries, so the rules are
// tested without a network and are the same live and over stored rounds.
#pragma once

#include "store/store.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace mw::monitor {

struct Intercepted {
  std::string target, sni, issuer;
  int64_t record_id = 0;
};

struct RoundSummary {
  int64_t run_id = 0;
  int64_t at_ms = 0;
  int64_t records = 0, judged = 0, intercepted = 0;  // judged: records whose control answered
  std::vector<Intercepted> hits;
  std::map<std::string, std::string> hop_pair;  // target -> "hop_before > hop_after", from this round's trace
  double share() const { return judged ? static_cast<double>(intercepted) / judged : 0.0; }
};

struct Thresholds {
  // A share change is an event when it is at least this much (absolute) and
  // also beyond chance: a two-proportion z of at least `z`.
  double min_share_delta = 0.10;
  double z = 3.0;
};

struct Change {
  std::string type;  // interception-started, interception-stopped, share-moved, new-issuer, new-trigger, device-moved
  std::string subject;
  nlohmann::ordered_json details = nlohmann::ordered_json::object();
};

// What earlier rounds established.
struct History {
  std::optional<RoundSummary> last;
  std::set<std::string> issuers, triggers;
  std::map<std::string, std::string> hop_pair;  // last known per target
  int rounds = 0;
};

// The changes `now` brings, given `h`; then `h` takes `now` in. The first
// round is the baseline: it yields none.
std::vector<Change> detect(History& h, const RoundSummary& now, const Thresholds& t = {});

// A round's summary from the store: the scan run, and its trace run if any.
tl::expected<RoundSummary, store::Error> summarize_round(store::Store& s, int64_t scan_run,
                                                         std::optional<int64_t> trace_run);
// The history of a monitor series as stored, for resuming it.
tl::expected<History, store::Error> history_of(store::Store& s, const std::string& series);

}  // namespace mw::monitor
