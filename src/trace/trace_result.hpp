// What a trace found, as plain values: each probe's outcome, each run's
// judgement, the settled verdict over runs, the JSON record and the
// aggregate over many targets. No sockets here: all of it is tested on
// values built by hand.
#pragma once

#include "net/address.hpp"
#include "net/asn_db.hpp"
#include "tls/observation.hpp"
#include "trace/probe_match.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mw::trace {

inline constexpr const char* kTraceSchema = "mitmwatch.trace/1";

enum class Outcome {
  time_exceeded,   // a router's ICMP time-exceeded, matched to this probe
  unreachable,     // a router's ICMP destination-unreachable
  tls,             // a TLS answer (ServerHello ...); `tls` holds the chain
  alert,           // a TLS alert
  rst,             // the connection was reset after the ClientHello
  fin,             // closed without a TLS answer
  other_data,      // bytes that are not TLS
  silence,         // nothing before the deadline
  connect_failed,  // the TCP handshake at full TTL failed
};
const char* to_string(Outcome o);
// The probe reached something that answered for the server (or posed as it).
bool is_answer(Outcome o);

struct ProbeResult {
  int ttl = 0;
  int attempt = 1;  // a silent hop is probed again
  Outcome outcome = Outcome::silence;
  std::optional<net::IpAddress> router;  // who sent the ICMP
  double rtt_ms = -1;                    // ClientHello out -> ICMP or first answer byte
  int quoted_ttl = -1;                   // TTL in the quoted header (1 from most routers)
  bool matched_by_sequence = false;
  std::vector<FieldChange> changes;      // quoted fields that differ from what was sent
  int answer_ip_ttl = -1;                // IP TTL of the first answer packet
  std::vector<uint32_t> answer_ip_ids;   // IP IDs of the answer packets (first few)
  std::string detail;
  std::optional<tls::Observation> tls;   // for tls outcomes
  bool forged = false;                   // judged against the control's chain
};

struct SniTrace {
  std::string sni;
  int synack_ttl = -1;  // IP TTL of the server's SYN-ACK (its distance, roughly)
  std::vector<ProbeResult> probes;

  // Lowest TTL with an answer, and that probe.
  const ProbeResult* first_answer() const;
};

enum class Verdict { before_server, at_server, not_observed, inconsistent, unreachable };
const char* to_string(Verdict v);

struct RunJudgement {
  Verdict verdict = Verdict::unreachable;
  std::optional<int> injector_hop;  // lowest TTL answered by a forged chain
  std::optional<int> server_hop;    // lowest TTL the control was answered at
  std::vector<std::string> reasons;
  friend bool operator==(const RunJudgement& a, const RunJudgement& b) {
    return a.verdict == b.verdict && a.injector_hop == b.injector_hop && a.server_hop == b.server_hop;
  }
};

struct Run {
  SniTrace trigger, control;
  RunJudgement judgement;
};

// Marks the trigger's forged answers (each compared with the control's
// answer, the real chain) and locates the injector.
RunJudgement judge_run(SniTrace& trigger, const SniTrace& control);

struct Settled {
  RunJudgement judgement;  // the agreed one; verdict inconsistent if none
  int agreeing = 0;        // runs that agree with it
};
// Settled once `required` runs agree; `final` says no more runs will come.
std::optional<Settled> settle(const std::vector<Run>& runs, int required, bool final);

struct TargetTrace {
  net::Endpoint target;
  std::string trigger_sni, control_sni;
  std::vector<Run> runs;
  Settled settled;
  int64_t started_unix_ms = 0;
};

// Router address per TTL, from the runs that agree with the verdict:
// control probes first (they pass the injector), then trigger probes.
std::map<int, net::IpAddress> hop_addresses(const TargetTrace& t);

nlohmann::ordered_json to_json(const TargetTrace& t, const net::AsnLookup* asn = nullptr);

// The report's aggregate view over trace records (read back as JSON).
struct TraceSummary {
  uint64_t targets = 0;
  std::map<std::string, uint64_t> by_verdict;
  std::map<int, uint64_t> hops_before_server;  // server_hop - injector_hop
  std::map<std::pair<std::string, std::string>, uint64_t> hop_pairs;  // (before, after)
  std::map<int, uint64_t> injector_hops;

  void add(const nlohmann::json& record);
  std::string render(size_t top_pairs = 5) const;
};

}  // namespace mw::trace
