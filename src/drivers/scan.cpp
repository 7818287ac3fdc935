#include "drivers/scan.hpp"

#include <deque>
#include <memory>
#include <queue>
#include <unordered_map>

namespace mw::drivers {
namespace {

using Clock = std::chrono::steady_clock;
using verdict::Verdict;

// One test SNI of one target, through its attempts.
struct SniTrack {
  std::string sni;
  size_t test_index = 0;  // into ScanOptions::test_snis
  std::vector<tls::Observation> tests;
  std::optional<tls::Observation> recheck;
  int retries_left = 0;
  bool waiting_for_control = false;  // a test finished before the first control
};

struct TargetJob {
  net::Endpoint target;
  std::optional<tls::Observation> control;
  std::vector<SniTrack> snis;
  size_t open = 0;  // SNIs without a record yet
};

enum class Role { control, test, recheck };

struct ProbeRequest {
  uint64_t job;
  size_t sni;  // index into TargetJob::snis (unused for control)
  Role role;
};

struct InFlight {
  ProbeRequest request;
  std::unique_ptr<tls::Probe> handshake;
  Clock::time_point deadline;
  bool deadline_is_connect = true;
  uint32_t generation = 0;
};

// Tokens at `rate` a second, at most `burst` held. A rate of 0: always a token.
struct TokenBucket {
  double rate = 0, burst = 1, tokens = 1;
  Clock::time_point last = Clock::now();
  bool ready(Clock::time_point now) {
    if (rate <= 0) return true;
    tokens = std::min(burst, tokens + std::chrono::duration<double>(now - last).count() * rate);
    last = now;
    return tokens >= 1;
  }
  void take() {
    if (rate > 0) tokens -= 1;
  }
  bool full() const { return rate <= 0 || tokens >= burst; }
};

struct Deadline {
  Clock::time_point at;
  size_t slot;
  uint32_t generation;
  bool operator>(const Deadline& o) const { return at > o.at; }
};

// The per-run state: the loop below, the jobs and the rules that advance them.
class ScanRun {
 public:
  ScanRun(const ScanOptions& o, const tls::ClientProfile& p, const tls::TrustStore& t,
          const certs::InterceptorRegistry& r, net::TargetStream& targets, const ScanHooks& hooks)
      : options_(o), profile_(p), trust_(t), registry_(r), targets_(targets), hooks_(hooks) {}

  ScanStats run();

 private:
  bool fill_from_targets();
  void start(const ProbeRequest& req);
  void finish_slot(size_t slot);
  void on_observation(const ProbeRequest& req, tls::Observation obs);
  void judge(TargetJob& job, uint64_t id, size_t sni_index);
  void emit(TargetJob& job, uint64_t id, size_t sni_index);
  void wait_on(size_t slot, tls::Probe::Want want);
  void advance(size_t slot, tls::Probe::Want want);
  void cut_deadline(size_t slot);
  // The first ready request whose destination may have another handshake now (ready_.size(): none).
  size_t next_allowed(Clock::time_point now);
  TokenBucket& bucket_of(const net::IpAddress& ip);

  const ScanOptions& options_;
  const tls::ClientProfile& profile_;
  const tls::TrustStore& trust_;
  const certs::InterceptorRegistry& registry_;
  net::TargetStream& targets_;
  const ScanHooks& hooks_;

  net::Epoll epoll_;
  tls::VerifyCache verify_cache_;
  std::unordered_map<uint64_t, TargetJob> jobs_;
  uint64_t next_job_ = 0;
  // Retries and rechecks go to the front so started targets finish first and
  // memory stays bounded by the concurrency, not by the target count.
  std::deque<ProbeRequest> ready_;
  std::vector<InFlight> slots_;
  std::vector<size_t> free_slots_;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> wakeups_;  // probes pacing their sends
  bool targets_exhausted_ = false;
  TokenBucket global_{options_.rate, std::max(1.0, options_.rate / 20), 1};
  std::unordered_map<std::string, TokenBucket> per_target_;  // by address
  ScanStats stats_;
};

bool ScanRun::fill_from_targets() {
  while (!targets_exhausted_) {
    auto target = targets_.next();
    if (!target) {
      targets_exhausted_ = true;
      return false;
    }
    ++stats_.targets;
    std::string name = target->to_string();
    TargetJob job;
    job.target = *target;
    const std::vector<std::string> control_only{""};
    const auto& snis = options_.test_snis.empty() ? control_only : options_.test_snis;
    for (size_t t = 0; t < snis.size(); ++t) {
      const auto& sni = snis[t];
      if (hooks_.already_done && hooks_.already_done(name, options_.test_snis.empty() ? options_.control_sni : sni)) {
        ++stats_.skipped_done;
        continue;
      }
      job.snis.push_back(SniTrack{sni, t, {}, std::nullopt, options_.retries, false});
    }
    if (job.snis.empty()) {
      ++stats_.targets_done;
      continue;
    }
    uint64_t id = next_job_++;
    job.open = job.snis.size();
    // Control and first tests start together; tests wait for the control to be judged.
    ready_.push_back({id, 0, Role::control});
    if (!options_.test_snis.empty())
      for (size_t i = 0; i < job.snis.size(); ++i) ready_.push_back({id, i, Role::test});
    jobs_.emplace(id, std::move(job));
    return true;
  }
  return false;
}

TokenBucket& ScanRun::bucket_of(const net::IpAddress& ip) {
  std::string key(reinterpret_cast<const char*>(ip.bytes.data()), ip.size());
  auto it = per_target_.find(key);
  if (it != per_target_.end()) return it->second;
  if (per_target_.size() > 4 * options_.concurrency + 1024) {  // bounded: forget addresses at rest
    auto now = Clock::now();
    for (auto at = per_target_.begin(); at != per_target_.end();)
      at = at->second.ready(now) && at->second.full() ? per_target_.erase(at) : std::next(at);
  }
  double burst = std::max(2.0, options_.per_target_rate);
  return per_target_.emplace(std::move(key), TokenBucket{options_.per_target_rate, burst, burst}).first->second;
}

size_t ScanRun::next_allowed(Clock::time_point now) {
  if (options_.per_target_rate <= 0) return ready_.empty() ? ready_.size() : 0;
  // Look a little way down the queue: another target's request may go while this one's waits.
  size_t window = std::min<size_t>(ready_.size(), 512);
  for (size_t i = 0; i < window; ++i)
    if (bucket_of(jobs_.at(ready_[i].job).target.ip).ready(now)) return i;
  return ready_.size();
}

void ScanRun::start(const ProbeRequest& req) {
  TargetJob& job = jobs_.at(req.job);
  std::string sni = req.role == Role::test ? job.snis[req.sni].sni : options_.control_sni;
  size_t slot;
  if (free_slots_.empty()) {
    slot = slots_.size();
    slots_.emplace_back();
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
  }
  InFlight& f = slots_[slot];
  f.request = req;
  f.deadline_is_connect = true;
  if (hooks_.make_probe)
    f.handshake = hooks_.make_probe(job.target,
                                    req.role == Role::test ? std::optional<size_t>(job.snis[req.sni].test_index) : std::nullopt, sni);
  else
    f.handshake = std::make_unique<tls::Handshake>(profile_, job.target, std::move(sni), options_.source_ip);
  ++f.generation;
  ++stats_.in_flight;
  auto want = f.handshake->start();
  if (want == tls::Probe::Want::done) {
    finish_slot(slot);
    return;
  }
  f.deadline = Clock::now() + options_.connect_timeout;
  deadlines_.push({f.deadline, slot, f.generation});
  cut_deadline(slot);
  epoll_.add(f.handshake->fd(), 0, (uint64_t{f.generation} << 32) | slot);
  wait_on(slot, want);
}

void ScanRun::wait_on(size_t slot, tls::Probe::Want want) {
  InFlight& f = slots_[slot];
  if (want == tls::Probe::Want::wait) {
    // No socket interest while the probe paces itself; the wake-up calls it again.
    epoll_.modify(f.handshake->fd(), 0, (uint64_t{f.generation} << 32) | slot);
    wakeups_.push({f.handshake->wake_at(), slot, f.generation});
    return;
  }
  epoll_.modify(f.handshake->fd(), want == tls::Probe::Want::read ? EPOLLIN : EPOLLOUT,
                (uint64_t{f.generation} << 32) | slot);
}

// After the probe was called: finish it, or wait for what it wants next.
void ScanRun::advance(size_t slot, tls::Probe::Want want) {
  InFlight& f = slots_[slot];
  bool was_connecting = f.deadline_is_connect;
  if (want == tls::Probe::Want::done) {
    finish_slot(slot);
    return;
  }
  if (was_connecting && !f.handshake->connecting()) {
    // Connected: the handshake phase gets its own deadline.
    f.deadline_is_connect = false;
    f.deadline = Clock::now() + options_.handshake_timeout;
    deadlines_.push({f.deadline, slot, f.generation});
  }
  cut_deadline(slot);
  wait_on(slot, want);
}

void ScanRun::cut_deadline(size_t slot) {
  InFlight& f = slots_[slot];
  if (auto cut = f.handshake->cut_deadline(); cut && *cut < f.deadline) {
    f.deadline = *cut;
    deadlines_.push({f.deadline, slot, f.generation});
  }
}

void ScanRun::finish_slot(size_t slot) {
  InFlight& f = slots_[slot];
  tls::Observation obs = f.handshake->take();
  f.handshake.reset();  // closes the socket, which also leaves epoll
  ++f.generation;       // stale deadlines and events for this slot are ignored
  free_slots_.push_back(slot);
  --stats_.in_flight;
  ++stats_.handshakes;
  if (obs.ok()) ++stats_.handshakes_ok;
  tls::assess(obs, trust_, registry_, &verify_cache_);
  on_observation(f.request, std::move(obs));
}

void ScanRun::on_observation(const ProbeRequest& req, tls::Observation obs) {
  auto it = jobs_.find(req.job);
  if (it == jobs_.end()) return;
  TargetJob& job = it->second;
  switch (req.role) {
    case Role::control:
      job.control = std::move(obs);
      if (options_.test_snis.empty()) {
        emit(job, req.job, 0);
        return;
      }
      for (size_t i = 0; i < job.snis.size(); ++i)
        if (job.snis[i].waiting_for_control) {
          job.snis[i].waiting_for_control = false;
          judge(job, req.job, i);
          if (!jobs_.count(req.job)) return;  // the job ended
        }
      return;
    case Role::test:
      job.snis[req.sni].tests.push_back(std::move(obs));
      if (!job.control) {
        job.snis[req.sni].waiting_for_control = true;
        return;
      }
      judge(job, req.job, req.sni);
      return;
    case Role::recheck:
      job.snis[req.sni].recheck = std::move(obs);
      emit(job, req.job, req.sni);
      return;
  }
}

// HyperQuack's rule: a test that differs from the control is retried; one
// that still differs (or ever looked forged) must survive a fresh control.
void ScanRun::judge(TargetJob& job, uint64_t id, size_t sni_index) {
  SniTrack& track = job.snis[sni_index];
  auto latest = verdict::compare(track.tests.back(), *job.control);
  if (verdict::needs_retry(latest) && track.retries_left > 0) {
    --track.retries_left;
    ready_.push_front({id, sni_index, Role::test});
    return;
  }
  bool ever_forged = false;
  for (const auto& t : track.tests)
    if (verdict::compare(t, *job.control).verdict == Verdict::intercepted) ever_forged = true;
  if (latest.differs || ever_forged) {
    ready_.push_front({id, sni_index, Role::recheck});
    return;
  }
  emit(job, id, sni_index);
}

void ScanRun::emit(TargetJob& job, uint64_t id, size_t sni_index) {
  SniTrack& track = job.snis[sni_index];
  records::ScanRecord record;
  record.target = job.target;
  record.control_sni = options_.control_sni;
  if (options_.test_snis.empty()) {
    // Control-only (--select-trusted): the control is the record.
    record.sni = options_.control_sni;
    record.result.verdict = job.control->ok() ? Verdict::clean : Verdict::unreachable;
    if (!job.control->ok()) record.result.reasons.push_back("control failed: " + tls::error_name(*job.control));
    record.attempts.push_back({"control", *job.control});
  } else {
    record.sni = track.sni;
    record.test_index = track.test_index;
    const tls::Observation& final_control = track.recheck ? *track.recheck : *job.control;
    std::vector<const tls::Observation*> tests;
    for (const auto& t : track.tests) tests.push_back(&t);
    record.result = verdict::settle(tests, final_control, &record.intercepted_attempts);
    record.attempts.push_back({"control", *job.control});
    for (auto& t : track.tests) record.attempts.push_back({"test", std::move(t)});
    if (track.recheck) record.attempts.push_back({"control-recheck", std::move(*track.recheck)});
    track.tests.clear();
    track.recheck.reset();
  }
  ++stats_.records;
  ++stats_.by_verdict[static_cast<int>(record.result.verdict)];
  if (hooks_.on_record) hooks_.on_record(std::move(record));
  if (--job.open == 0) {
    ++stats_.targets_done;
    jobs_.erase(id);
  }
}

ScanStats ScanRun::run() {
  std::vector<epoll_event> events(256);
  auto next_progress = Clock::now();
  for (;;) {
    if (hooks_.stop && hooks_.stop->load()) {
      stats_.stopped = true;
      break;
    }
    auto now = Clock::now();
    bool rate_limited = false, target_limited = false;
    while (stats_.in_flight < options_.concurrency) {
      if (ready_.empty() && !fill_from_targets()) break;
      if (!global_.ready(now)) {
        rate_limited = true;
        break;
      }
      size_t pick = next_allowed(now);
      if (pick == ready_.size()) {
        // Every request in view waits for its destination: more targets may bring others.
        if (ready_.size() < options_.concurrency && fill_from_targets()) continue;
        target_limited = true;
        break;
      }
      ProbeRequest req = ready_[pick];
      ready_.erase(ready_.begin() + static_cast<ptrdiff_t>(pick));
      global_.take();
      if (options_.per_target_rate > 0) bucket_of(jobs_.at(req.job).target.ip).take();
      start(req);
    }
    if (stats_.in_flight == 0 && ready_.empty() && targets_exhausted_) break;

    int timeout_ms = 100;
    if (rate_limited) timeout_ms = std::max(1, static_cast<int>(1000.0 / options_.rate));
    if (target_limited) timeout_ms = std::min(timeout_ms, std::max(1, static_cast<int>(1000.0 / options_.per_target_rate)));
    for (const auto* queue : {&deadlines_, &wakeups_}) {
      if (queue->empty()) continue;
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(queue->top().at - now).count();
      timeout_ms = static_cast<int>(std::clamp<long long>(until + 1, 0, timeout_ms));
    }
    int n = epoll_.wait(events.data(), static_cast<int>(events.size()), timeout_ms);
    for (int i = 0; i < n; ++i) {
      size_t slot = events[i].data.u64 & 0xffffffffu;
      auto generation = static_cast<uint32_t>(events[i].data.u64 >> 32);
      if (slot >= slots_.size() || slots_[slot].generation != generation || !slots_[slot].handshake) continue;
      advance(slot, slots_[slot].handshake->on_ready());
    }
    now = Clock::now();
    while (!wakeups_.empty() && wakeups_.top().at <= now) {
      Deadline w = wakeups_.top();
      wakeups_.pop();
      InFlight& f = slots_[w.slot];
      if (f.generation != w.generation || !f.handshake) continue;
      advance(w.slot, f.handshake->on_ready());
    }
    while (!deadlines_.empty() && deadlines_.top().at <= now) {
      Deadline d = deadlines_.top();
      deadlines_.pop();
      InFlight& f = slots_[d.slot];
      if (f.generation != d.generation || !f.handshake || f.deadline != d.at) continue;
      f.handshake->time_out();
      finish_slot(d.slot);
    }
    if (hooks_.on_progress && now >= next_progress) {
      hooks_.on_progress(stats_);
      next_progress = now + std::chrono::milliseconds(200);
    }
  }
  if (hooks_.on_progress) hooks_.on_progress(stats_);
  return stats_;
}

}  // namespace

Scanner::Scanner(ScanOptions options, const tls::ClientProfile& profile, const tls::TrustStore& trust,
                 const certs::InterceptorRegistry& registry)
    : options_(std::move(options)), profile_(profile), trust_(trust), registry_(registry) {}

ScanStats Scanner::run(net::TargetStream& targets, const ScanHooks& hooks) {
  ScanRun run(options_, profile_, trust_, registry_, targets, hooks);
  return run.run();
}

}  // namespace mw::drivers
