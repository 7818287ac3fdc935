// The trace driver: locates an interception device on the path by sending
// the ClientHello with TTL 1, 2, 3, ... and finding the first TTL at which a
// forged chain comes back, next to the same search with a control SNI that
// only the real server answers (the report's "Network Hop-Level Analysis").
//
// Each probe is its own TCP connection: the TCP handshake at full TTL, then
// the ClientHello segment at the probe's TTL. Many probes of many targets are
// in flight at once on one epoll loop. Routers' ICMP time-exceeded messages
// come from a packet capture and are matched to probes by the headers they
// quote (trace/probe_match.hpp), never by arrival order.
#pragma once

#include "certs/registry.hpp"
#include "net/address.hpp"
#include "net/capture.hpp"
#include "tls/client.hpp"
#include "tls/trust.hpp"
#include "trace/trace_result.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace mw::drivers {

struct TraceTarget {
  net::Endpoint endpoint;
  std::string trigger_sni;
};

struct TraceOptions {
  std::string control_sni;  // empty: the control sends no SNI
  int max_ttl = 32;
  size_t concurrency = 500;   // probes (TCP connections) in flight
  double rate = 0;            // new probes per second; 0: no cap
  double hop_rate = 100;      // probes per second that expire at one router
  int window = 8;             // probes in flight per (target, SNI)
  int hop_retries = 2;        // extra probes for a TTL that stayed silent
  int runs = 1;               // agreeing runs needed per target
  int max_runs = 3;           // runs at most before `inconsistent`
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds probe_timeout{2000};      // silence after the ClientHello
  std::chrono::milliseconds handshake_timeout{5000};  // to read the chain once it began
  std::optional<net::IpAddress> source_ip;
};

struct TraceStats {
  uint64_t targets = 0, targets_done = 0;
  uint64_t probes = 0, in_flight = 0;
  uint64_t icmp_matched = 0, icmp_by_sequence = 0, icmp_unmatched = 0;
  uint64_t by_verdict[5] = {};  // indexed by trace::Verdict
  bool stopped = false;
};

struct TraceHooks {
  std::function<std::optional<TraceTarget>()> next_target;
  std::function<void(trace::TargetTrace&&)> on_record;
  std::function<void(const TraceStats&)> on_progress;
  // Every captured packet that belongs to a probe, and every ICMP error.
  std::function<void(const net::CapturedPacket&)> on_packet;
  const std::atomic<bool>* stop = nullptr;
};

class Tracer {
 public:
  Tracer(TraceOptions options, const tls::ClientProfile& profile, const tls::TrustStore& trust,
         const certs::InterceptorRegistry& registry, net::LiveCapture& capture);
  TraceStats run(const TraceHooks& hooks);

 private:
  TraceOptions options_;
  const tls::ClientProfile& profile_;
  const tls::TrustStore& trust_;
  const certs::InterceptorRegistry& registry_;
  net::LiveCapture& capture_;
};

// The capture filter a trace needs: its TCP ports and ICMP errors.
std::string trace_capture_filter();

}  // namespace mw::drivers
