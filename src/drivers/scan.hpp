// The scan driver: turns targets into trigger and control handshakes, runs
// them concurrently on one epoll loop, applies the retry rule, and hands out
// one record per (target, SNI).
//
// Why raw epoll, one thread: OpenSSL is the cost (55 % of a handshake's time
// in libcrypto, 0.1 % in the loop); Boost.Asio measured the same throughput
// but ~83 KB per in-flight handshake against ~65 KB raw, and OpenSSL 3.0
// locks heavily across threads. More cores: more processes (--shard).
#pragma once

#include "certs/registry.hpp"
#include "net/targets.hpp"
#include "records/scan_record.hpp"
#include "tls/client.hpp"
#include "tls/probe.hpp"
#include "tls/trust.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mw::drivers {

struct ScanOptions {
  std::vector<std::string> test_snis;  // empty: control only (--select-trusted)
  std::string control_sni;             // empty: the control sends no SNI
  int retries = 4;
  size_t concurrency = 1000;
  double rate = 0;  // new handshakes per second; 0: no cap
  // New handshakes per second to one address (all its ports); 0: no cap. A
  // target's control and first tests may start together (a burst of 2 or rate).
  double per_target_rate = 0;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds handshake_timeout{10000};
  std::optional<net::IpAddress> source_ip;
};

struct ScanStats {
  uint64_t targets = 0;          // targets taken from the stream
  uint64_t targets_done = 0;     // every record of the target written
  uint64_t records = 0;
  uint64_t skipped_done = 0;     // records already in the output (resume)
  uint64_t handshakes = 0;
  uint64_t handshakes_ok = 0;
  uint64_t in_flight = 0;
  uint64_t by_verdict[4] = {};   // indexed by verdict::Verdict
  bool stopped = false;          // ended early by the stop flag
};

// Makes the probe for one handshake: `test` is the index into test_snis, or
// nullopt for a control. Unset: an OpenSSL handshake (tls::Handshake) with
// the scanner's profile and the SNI given.
using ProbeFactory = std::function<std::unique_ptr<tls::Probe>(const net::Endpoint& target, std::optional<size_t> test,
                                                               const std::string& sni)>;

struct ScanHooks {
  // Called for each finished record, in completion order.
  std::function<void(records::ScanRecord&&)> on_record;
  // True when the output already holds this (target, SNI) record.
  std::function<bool(const std::string& target, const std::string& sni)> already_done;
  // Called a few times a second.
  std::function<void(const ScanStats&)> on_progress;
  // Polled each loop turn; when it becomes true the scan ends at once
  // (records of unfinished targets are not written, and resume redoes them).
  const std::atomic<bool>* stop = nullptr;
  ProbeFactory make_probe;
};

class Scanner {
 public:
  Scanner(ScanOptions options, const tls::ClientProfile& profile, const tls::TrustStore& trust,
          const certs::InterceptorRegistry& registry);
  ScanStats run(net::TargetStream& targets, const ScanHooks& hooks);

 private:
  ScanOptions options_;
  const tls::ClientProfile& profile_;
  const tls::TrustStore& trust_;
  const certs::InterceptorRegistry& registry_;
};

}  // namespace mw::drivers
