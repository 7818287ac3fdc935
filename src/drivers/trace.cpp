#include "drivers/trace.hpp"

#include "tls/memory_handshake.hpp"
#include "trace/probe_match.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <memory>
#include <queue>
#include <unordered_map>

namespace mw::drivers {
namespace {

using Clock = std::chrono::steady_clock;
using trace::Outcome;
using trace::ProbeId;

constexpr ProbeId kCaptureTag = 0;  // epoll tag of the capture; probes count from 1
constexpr size_t kMaxAnswerIds = 8;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

class ProbeBucket {
 public:
  ProbeBucket(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst) {}
  bool take(Clock::time_point now) {
    if (rate_ <= 0) return true;
    tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
    last_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  double rate_, burst_, tokens_;
  Clock::time_point last_ = Clock::now();
};

// One SNI's TTL search within one run.
struct SideState {
  trace::SniTrace result;
  int next_ttl = 1;
  int stop_ttl = INT_MAX;  // lowest TTL that got an answer so far
  int in_flight = 0;
  struct Retry {
    int ttl, attempt;
    Clock::time_point not_before;
  };
  std::deque<Retry> retries;
  // The server's distance as its SYN-ACK's TTL suggests (initial TTLs are
  // 64, 128 or 255): the search stops one TTL past it, unless nothing
  // answered by then (an odd initial TTL, an asymmetric path).
  int distance_guess = 0;
  bool guess_failed = false;

  void note_synack_ttl(int ttl) {
    if (distance_guess > 0 || ttl <= 0) return;
    for (int initial : {32, 64, 128, 255})
      if (ttl <= initial) {
        distance_guess = initial - ttl + 1;
        return;
      }
  }
  int limit(int max_ttl) const {
    int l = std::min(max_ttl, stop_ttl);
    if (distance_guess > 0 && !guess_failed) l = std::min(l, distance_guess + 1);
    return l;
  }
  void prune_retries() {
    std::erase_if(retries, [&](const Retry& r) { return r.ttl >= stop_ttl; });
  }
  bool done(int max_ttl) {
    prune_retries();
    if (in_flight != 0 || !retries.empty() || next_ttl <= limit(max_ttl)) return false;
    if (stop_ttl == INT_MAX && distance_guess > 0 && !guess_failed && next_ttl <= max_ttl) {
      guess_failed = true;  // nothing answered near the guessed distance: search on
      return false;
    }
    return true;
  }
};

struct Job {
  trace::TargetTrace trace;
  SideState sides[2];  // 0: trigger, 1: control
};

struct Probe {
  ProbeId id = 0;
  uint64_t job = 0;
  int side = 0;
  net::Fd fd;
  bool connecting = true;
  bool answered = false;
  std::unique_ptr<tls::MemoryHandshake> handshake;
  std::vector<uint8_t> unsent;
  Clock::time_point started, sent;
  std::optional<std::chrono::system_clock::time_point> sent_on_wire;  // from the capture
  Clock::time_point deadline;
  trace::ProbeResult result;
};

struct ProbeDeadline {
  Clock::time_point at;
  ProbeId probe;
  bool operator>(const ProbeDeadline& o) const { return at > o.at; }
};

// Where a probe of this TTL toward this address will expire, as far as
// earlier probes showed: the key its ICMP budget is counted under.
std::string hop_key(const net::IpAddress& target, int ttl, const std::unordered_map<std::string, std::string>& seen) {
  std::string prefix = target.to_string();
  if (target.family == AF_INET) prefix = prefix.substr(0, prefix.rfind('.'));  // the /24
  std::string k = prefix + "#" + std::to_string(ttl);
  auto it = seen.find(k);
  return it != seen.end() ? it->second : "ttl" + std::to_string(ttl);
}

class TraceRun {
 public:
  TraceRun(const TraceOptions& o, const tls::ClientProfile& p, const tls::TrustStore& t,
           const certs::InterceptorRegistry& r, net::LiveCapture& c, const TraceHooks& h)
      : options_(o), profile_(p), trust_(t), registry_(r), capture_(c), hooks_(h), rate_(o.rate, std::max(1.0, o.rate / 10)) {}

  TraceStats run();

 private:
  void launch(Clock::time_point now);
  bool launch_from(uint64_t job_id, Job& job, Clock::time_point now);
  bool start_probe(uint64_t job_id, Job& job, int side, int ttl, int attempt);
  void on_writable(Probe& p);
  void on_readable(Probe& p);
  void on_packet(const net::CapturedPacket& pkt);
  void on_icmp(Probe& p, const net::IcmpError& icmp, const trace::Attribution& a, const net::IpPacket& outer,
               std::chrono::system_clock::time_point when);
  void on_deadline(Probe& p);
  void finish(Probe& p, Outcome outcome, std::string detail = {});
  void finish_tls(Probe& p);
  void arm(Probe& p, Clock::time_point at);
  void side_progress(uint64_t job_id);
  void drain_capture();

  const TraceOptions& options_;
  const tls::ClientProfile& profile_;
  const tls::TrustStore& trust_;
  const certs::InterceptorRegistry& registry_;
  net::LiveCapture& capture_;
  const TraceHooks& hooks_;

  net::Epoll epoll_;
  trace::ProbeMatcher matcher_;
  tls::VerifyCache verify_cache_;
  ProbeBucket rate_;
  std::unordered_map<std::string, ProbeBucket> hop_buckets_;
  std::unordered_map<std::string, std::string> hops_seen_;  // (prefix, ttl) -> router
  std::unordered_map<uint64_t, Job> jobs_;
  std::vector<uint64_t> job_order_;
  std::unordered_map<ProbeId, std::unique_ptr<Probe>> probes_;
  std::priority_queue<ProbeDeadline, std::vector<ProbeDeadline>, std::greater<>> deadlines_;
  uint64_t next_job_ = 1;
  ProbeId next_probe_ = 1;
  bool targets_exhausted_ = false;
  bool tokens_short_ = false;
  std::string capture_error_;
  TraceStats stats_;
};

TraceStats TraceRun::run() {
  if (!epoll_.valid()) throw std::runtime_error("epoll_create1 failed");
  epoll_.add(capture_.fd(), EPOLLIN, kCaptureTag);
  auto last_progress = Clock::now();
  std::vector<epoll_event> events(256);
  for (;;) {
    if (hooks_.stop && hooks_.stop->load()) {
      stats_.stopped = true;
      break;
    }
    auto now = Clock::now();
    launch(now);
    if (jobs_.empty() && targets_exhausted_) break;
    int timeout_ms = 100;
    if (!deadlines_.empty())
      timeout_ms = std::clamp(static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(deadlines_.top().at - now).count()), 0, 100);
    if (tokens_short_) timeout_ms = std::min(timeout_ms, 2);
    int n = epoll_.wait(events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
    // The capture first: an ICMP error or the server's first packet is seen
    // there before the socket reports it, which keeps RTTs from the wire.
    drain_capture();
    if (!capture_error_.empty()) throw std::runtime_error(capture_error_);
    for (int i = 0; i < n; ++i) {
      ProbeId id = events[i].data.u64;
      if (id == kCaptureTag) continue;
      auto it = probes_.find(id);
      if (it == probes_.end()) continue;
      Probe& p = *it->second;
      if (p.connecting || !p.unsent.empty()) on_writable(p);
      else on_readable(p);
    }
    now = Clock::now();
    while (!deadlines_.empty() && deadlines_.top().at <= now) {
      ProbeDeadline d = deadlines_.top();
      deadlines_.pop();
      auto it = probes_.find(d.probe);
      if (it != probes_.end() && it->second->deadline == d.at) on_deadline(*it->second);
    }
    if (hooks_.on_progress && now - last_progress > std::chrono::milliseconds(200)) {
      last_progress = now;
      stats_.in_flight = probes_.size();
      hooks_.on_progress(stats_);
    }
  }
  stats_.in_flight = probes_.size();
  if (hooks_.on_progress) hooks_.on_progress(stats_);
  return stats_;
}

void TraceRun::drain_capture() {
  auto n = capture_.drain([&](const net::CapturedPacket& pkt) { on_packet(pkt); });
  if (!n) capture_error_ = n.error();
}

// The scheduler: jobs in arrival order each start what their TTL search
// allows; a new target is taken only when no open job can use a slot.
void TraceRun::launch(Clock::time_point now) {
  tokens_short_ = false;
  size_t max_jobs = std::max<size_t>(1, options_.concurrency / 2);
  for (;;) {
    bool started = false;
    for (size_t i = 0; i < job_order_.size() && probes_.size() < options_.concurrency; ++i) {
      auto it = jobs_.find(job_order_[i]);
      if (it != jobs_.end()) started |= launch_from(it->first, it->second, now);
    }
    if (probes_.size() >= options_.concurrency || tokens_short_) return;
    if (started) continue;
    if (targets_exhausted_ || jobs_.size() >= max_jobs) return;
    auto target = hooks_.next_target ? hooks_.next_target() : std::nullopt;
    if (!target) {
      targets_exhausted_ = true;
      return;
    }
    uint64_t id = next_job_++;
    Job& job = jobs_[id];
    job.trace.target = target->endpoint;
    job.trace.trigger_sni = target->trigger_sni;
    job.trace.control_sni = options_.control_sni;
    job.trace.started_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch()).count();
    job.sides[0].result.sni = target->trigger_sni;
    job.sides[1].result.sni = options_.control_sni;
    job_order_.push_back(id);
    ++stats_.targets;
  }
}

bool TraceRun::launch_from(uint64_t job_id, Job& job, Clock::time_point now) {
  bool started = false;
  // Alternate trigger and control so both searches advance together.
  for (bool more = true; more && probes_.size() < options_.concurrency;) {
    more = false;
    for (int side = 0; side < 2 && probes_.size() < options_.concurrency; ++side) {
      SideState& s = job.sides[side];
      if (s.in_flight >= options_.window) continue;
      s.prune_retries();
      int ttl = 0, attempt = 1;
      auto retry = std::find_if(s.retries.begin(), s.retries.end(), [&](const auto& r) { return r.not_before <= now; });
      if (retry != s.retries.end()) {
        ttl = retry->ttl;
        attempt = retry->attempt;
      } else if (s.next_ttl <= s.limit(options_.max_ttl)) {
        ttl = s.next_ttl;
      } else {
        continue;
      }
      auto key = hop_key(job.trace.target.ip, ttl, hops_seen_);
      auto bucket = hop_buckets_.try_emplace(key, options_.hop_rate, std::max(1.0, options_.hop_rate / 20)).first;
      if (!rate_.take(now)) {
        tokens_short_ = true;
        return started;
      }
      if (!bucket->second.take(now)) {
        tokens_short_ = true;
        continue;
      }
      if (retry != s.retries.end()) s.retries.erase(retry);
      else ++s.next_ttl;
      start_probe(job_id, job, side, ttl, attempt);
      started = more = true;
    }
  }
  return started;
}

bool TraceRun::start_probe(uint64_t job_id, Job& job, int side, int ttl, int attempt) {
  auto owned = std::make_unique<Probe>();
  Probe& p = *owned;
  p.id = next_probe_++;
  p.job = job_id;
  p.side = side;
  p.result.ttl = ttl;
  p.result.attempt = attempt;
  p.started = Clock::now();
  probes_.emplace(p.id, std::move(owned));
  ++job.sides[side].in_flight;
  ++stats_.probes;
  const net::Endpoint& target = job.trace.target;
  p.fd.reset(::socket(target.ip.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!p.fd) {
    finish(p, Outcome::connect_failed, std::string("socket: ") + std::strerror(errno));
    return false;
  }
  int one = 1;
  ::setsockopt(p.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (options_.source_ip) {
    sockaddr_storage ss;
    socklen_t len = net::Endpoint{*options_.source_ip, 0}.to_sockaddr(ss);
    if (::bind(p.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      finish(p, Outcome::connect_failed, std::string("bind: ") + std::strerror(errno));
      return false;
    }
  }
  sockaddr_storage ss;
  socklen_t len = target.to_sockaddr(ss);
  if (::connect(p.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    finish(p, Outcome::connect_failed, std::strerror(errno));
    return false;
  }
  // connect() has picked the local address and port already: the SYN-ACK
  // (its TTL tells the server's distance) is matched from here on.
  sockaddr_storage local{};
  socklen_t llen = sizeof local;
  ::getsockname(p.fd.get(), reinterpret_cast<sockaddr*>(&local), &llen);
  net::Endpoint me = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&local));
  matcher_.add(p.id, {me.ip, target.ip, me.port, target.port});
  epoll_.add(p.fd.get(), EPOLLOUT, p.id);
  arm(p, p.started + options_.connect_timeout);
  return true;
}

void TraceRun::arm(Probe& p, Clock::time_point at) {
  p.deadline = at;
  deadlines_.push({at, p.id});
}

void TraceRun::on_writable(Probe& p) {
  if (p.connecting) {
    int err = 0;
    socklen_t elen = sizeof err;
    ::getsockopt(p.fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return finish(p, Outcome::connect_failed, std::strerror(err));
    p.connecting = false;
    Job& job = jobs_.at(p.job);
    // Only segments sent from now on carry the probe's TTL; the TCP
    // handshake went at the full TTL.
    int ttl = p.result.ttl;
    int rc = job.trace.target.ip.family == AF_INET
                 ? ::setsockopt(p.fd.get(), IPPROTO_IP, IP_TTL, &ttl, sizeof ttl)
                 : ::setsockopt(p.fd.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl);
    if (rc != 0) return finish(p, Outcome::connect_failed, std::string("setting the TTL: ") + std::strerror(errno));
    p.handshake = std::make_unique<tls::MemoryHandshake>(profile_, job.sides[p.side].result.sni);
    if (p.handshake->client_hello().empty())
      return finish(p, Outcome::connect_failed, "OpenSSL made no ClientHello");
    p.unsent = p.handshake->client_hello();
    p.sent = Clock::now();
  }
  ssize_t n = ::send(p.fd.get(), p.unsent.data(), p.unsent.size(), MSG_NOSIGNAL);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    return finish(p, errno == ECONNRESET || errno == EPIPE ? Outcome::rst : Outcome::connect_failed,
                  std::string("send: ") + std::strerror(errno));
  if (n > 0) p.unsent.erase(p.unsent.begin(), p.unsent.begin() + n);
  if (!p.unsent.empty()) {
    epoll_.modify(p.fd.get(), EPOLLOUT, p.id);
    return;
  }
  epoll_.modify(p.fd.get(), EPOLLIN | EPOLLRDHUP, p.id);
  arm(p, Clock::now() + options_.probe_timeout);
}

void TraceRun::on_readable(Probe& p) {
  uint8_t buf[16384];
  for (;;) {
    ssize_t n = ::recv(p.fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      if (!p.answered) {
        p.answered = true;
        if (p.result.rtt_ms < 0) p.result.rtt_ms = ms_between(p.sent, Clock::now());
        arm(p, Clock::now() + options_.handshake_timeout);
      }
      auto state = p.handshake->feed({buf, static_cast<size_t>(n)});
      if (state == tls::MemoryHandshake::State::chain_ready) return finish_tls(p);
      if (state == tls::MemoryHandshake::State::alert) return finish(p, Outcome::alert, p.handshake->observation().error_detail);
      if (state == tls::MemoryHandshake::State::failed) {
        if (!p.handshake->saw_handshake_record()) return finish(p, Outcome::other_data, "the answer is not TLS");
        return finish_tls(p);
      }
      continue;
    }
    if (n == 0) {
      if (p.answered && p.handshake->saw_handshake_record()) {
        p.handshake->observation().error = tls::ProbeError::eof;
        p.handshake->observation().error_detail = "closed before the chain was complete";
        return finish_tls(p);
      }
      return finish(p, Outcome::fin, "closed without a TLS answer");
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EINTR) continue;
    int err = errno;
    if (p.answered && p.handshake->saw_handshake_record()) {
      p.handshake->observation().error = tls::ProbeError::reset;
      p.handshake->observation().error_detail = std::strerror(err);
      return finish_tls(p);
    }
    if (err == ECONNRESET || err == EPIPE) return finish(p, Outcome::rst, "reset after the ClientHello");
    if (err == EHOSTUNREACH || err == ENETUNREACH) return finish(p, Outcome::unreachable, std::strerror(err));
    if (p.result.rtt_ms < 0) p.result.rtt_ms = -1;
    return finish(p, Outcome::silence, std::strerror(err));
  }
}

void TraceRun::on_deadline(Probe& p) {
  if (p.connecting) return finish(p, Outcome::connect_failed, "no answer to SYN before the deadline");
  if (p.answered && p.handshake->saw_handshake_record()) {
    p.handshake->observation().error = tls::ProbeError::handshake_timeout;
    p.handshake->observation().error_detail = "chain not complete before the deadline";
    return finish_tls(p);
  }
  if (p.answered) return finish(p, Outcome::other_data, "bytes that are not TLS, then nothing");
  finish(p, Outcome::silence);
}

void TraceRun::finish_tls(Probe& p) {
  tls::Observation obs = std::move(p.handshake->observation());
  if (obs.ok() || !obs.chain.empty()) tls::assess(obs, trust_, registry_, &verify_cache_);
  p.result.tls = std::move(obs);
  finish(p, Outcome::tls);
}

void TraceRun::on_packet(const net::CapturedPacket& pkt) {
  auto ip_bytes = net::ip_from_frame(capture_.linktype(), pkt.frame);
  if (!ip_bytes) return;
  auto ip = net::parse_ip(*ip_bytes);
  if (!ip) return;
  if (auto icmp = net::parse_icmp_error(*ip)) {
    if (hooks_.on_packet) hooks_.on_packet(pkt);
    auto a = matcher_.attribute(*icmp);
    if (!a) {
      ++stats_.icmp_unmatched;
      return;
    }
    auto it = probes_.find(a->probe);
    if (it != probes_.end()) on_icmp(*it->second, *icmp, *a, *ip, pkt.when);
    return;
  }
  auto tcp = net::parse_tcp(*ip);
  if (!tcp) return;
  bool outgoing = true;
  auto id = matcher_.find({ip->src, ip->dst, tcp->src_port, tcp->dst_port});
  if (!id) {
    outgoing = false;
    id = matcher_.find({ip->dst, ip->src, tcp->dst_port, tcp->src_port});
  }
  if (!id) return;
  auto it = probes_.find(*id);
  if (it == probes_.end()) return;
  Probe& p = *it->second;
  if (hooks_.on_packet) hooks_.on_packet(pkt);
  if (outgoing) {
    if (!tcp->payload.empty()) {
      matcher_.note_sent(p.id, *ip, *tcp);
      if (!p.sent_on_wire) p.sent_on_wire = pkt.when;
    }
    return;
  }
  if (tcp->has(net::TcpSegment::kSyn) && tcp->has(net::TcpSegment::kAck)) {
    SideState& side = jobs_.at(p.job).sides[p.side];
    if (side.result.synack_ttl < 0) side.result.synack_ttl = ip->ttl;
    side.note_synack_ttl(ip->ttl);
    return;
  }
  bool answer = !tcp->payload.empty() || tcp->has(net::TcpSegment::kRst) || tcp->has(net::TcpSegment::kFin);
  if (!answer || p.connecting) return;
  if (p.result.answer_ip_ttl < 0) {
    p.result.answer_ip_ttl = ip->ttl;
    if (p.sent_on_wire) p.result.rtt_ms = std::chrono::duration<double, std::milli>(pkt.when - *p.sent_on_wire).count();
  }
  if (ip->family == AF_INET && p.result.answer_ip_ids.size() < kMaxAnswerIds) p.result.answer_ip_ids.push_back(ip->id);
}

void TraceRun::on_icmp(Probe& p, const net::IcmpError& icmp, const trace::Attribution& a, const net::IpPacket& outer,
                       std::chrono::system_clock::time_point when) {
  ++stats_.icmp_matched;
  if (a.by_sequence) ++stats_.icmp_by_sequence;
  // Late copies (for a retransmission) or an ICMP racing the answer change nothing.
  if (p.connecting || p.answered) return;
  p.result.router = outer.src;
  p.result.quoted_ttl = icmp.quoted.ttl;
  p.result.matched_by_sequence = a.by_sequence;
  p.result.changes = a.changes;
  p.result.rtt_ms = p.sent_on_wire ? std::chrono::duration<double, std::milli>(when - *p.sent_on_wire).count()
                                   : ms_between(p.sent, Clock::now());
  if (icmp.kind == net::IcmpError::Kind::time_exceeded) {
    Job& job = jobs_.at(p.job);
    std::string prefix = job.trace.target.ip.to_string();
    if (job.trace.target.ip.family == AF_INET) prefix = prefix.substr(0, prefix.rfind('.'));
    hops_seen_[prefix + "#" + std::to_string(p.result.ttl)] = outer.src.to_string();
    return finish(p, Outcome::time_exceeded);
  }
  finish(p, Outcome::unreachable, "ICMP type " + std::to_string(icmp.type) + " code " + std::to_string(icmp.code));
}

void TraceRun::finish(Probe& p, Outcome outcome, std::string detail) {
  matcher_.remove(p.id);
  if (p.fd) {
    epoll_.remove(p.fd.get());
    // The reset that close() sends goes at full TTL: it reaches the server
    // (or the device) instead of expiring at the probe's router with an ICMP
    // error of its own.
    int full = 64;
    if (!p.connecting) {
      ::setsockopt(p.fd.get(), IPPROTO_IP, IP_TTL, &full, sizeof full);
      ::setsockopt(p.fd.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, &full, sizeof full);
    }
  }
  p.fd.reset();
  p.result.outcome = outcome;
  if (p.result.detail.empty()) p.result.detail = std::move(detail);
  if (outcome == Outcome::silence || outcome == Outcome::connect_failed) p.result.rtt_ms = -1;
  uint64_t job_id = p.job;
  Job& job = jobs_.at(job_id);
  SideState& s = job.sides[p.side];
  --s.in_flight;
  int ttl = p.result.ttl, attempt = p.result.attempt;
  if (trace::is_answer(outcome)) s.stop_ttl = std::min(s.stop_ttl, ttl);
  // A silent hop may be a rate-limited router: ask again, a little later.
  if (outcome == Outcome::silence && attempt <= options_.hop_retries && ttl < s.stop_ttl)
    s.retries.push_back({ttl, attempt + 1, Clock::now() + std::chrono::milliseconds(250 * attempt)});
  s.result.probes.push_back(std::move(p.result));
  probes_.erase(p.id);  // p is gone from here on
  side_progress(job_id);
}

void TraceRun::side_progress(uint64_t job_id) {
  Job& job = jobs_.at(job_id);
  if (!job.sides[0].done(options_.max_ttl) || !job.sides[1].done(options_.max_ttl)) return;
  trace::Run run;
  run.trigger = std::move(job.sides[0].result);
  run.control = std::move(job.sides[1].result);
  run.judgement = trace::judge_run(run.trigger, run.control);
  job.trace.runs.push_back(std::move(run));
  bool final = static_cast<int>(job.trace.runs.size()) >= options_.max_runs;
  auto settled = trace::settle(job.trace.runs, options_.runs, final);
  if (!settled) {
    // Another run: fresh searches, same target.
    for (int side = 0; side < 2; ++side) {
      std::string sni = side == 0 ? job.trace.trigger_sni : job.trace.control_sni;
      job.sides[side] = SideState{};
      job.sides[side].result.sni = sni;
    }
    return;
  }
  job.trace.settled = std::move(*settled);
  ++stats_.by_verdict[static_cast<int>(job.trace.settled.judgement.verdict)];
  ++stats_.targets_done;
  if (hooks_.on_record) hooks_.on_record(std::move(job.trace));
  jobs_.erase(job_id);
  std::erase(job_order_, job_id);
}

}  // namespace

std::string trace_capture_filter() { return "tcp or icmp or icmp6"; }

Tracer::Tracer(TraceOptions options, const tls::ClientProfile& profile, const tls::TrustStore& trust,
               const certs::InterceptorRegistry& registry, net::LiveCapture& capture)
    : options_(std::move(options)), profile_(profile), trust_(trust), registry_(registry), capture_(capture) {}

TraceStats Tracer::run(const TraceHooks& hooks) {
  TraceRun r(options_, profile_, trust_, registry_, capture_, hooks);
  return r.run();
}

}  // namespace mw::drivers
