#include "fleet/agent.hpp"

#include "cli/child_process.hpp"
#include "store/import.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

namespace mw::fleet {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A serialization failure or deadlock (PostgreSQL), or a writer that waited
// past SQLite's busy timeout: the transaction can simply run again.
bool retryable(const Error& e) {
  return e.find("(SQLSTATE 40") != std::string::npos || e.find("database is locked") != std::string::npos;
}

std::string last_line_of(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

struct ScanCounts {
  int64_t records = 0, intercepted = 0;
};
ScanCounts count_records(const std::string& path) {
  ScanCounts c;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    ++c.records;
    if (j.value("verdict", "") == "intercepted") ++c.intercepted;
  }
  return c;
}

class Agent {
 public:
  explicit Agent(const AgentOptions& o) : o_(o) {
    info_.name = o.name;
    info_.vantage = o.vantage;
    info_.host = store::host_name();
    info_.pid = getpid();
  }

  tl::expected<AgentSummary, Error> run() {
    std::error_code ec;
    fs::create_directories(o_.work_dir, ec);
    if (ec) return tl::unexpected("work directory " + o_.work_dir + ": " + ec.message());
    if (auto ok = connect(); !ok) return tl::unexpected(ok.error());
    if (!o_.campaign.empty()) {
      auto c = find_campaign(*store_, o_.campaign);
      if (!c) return tl::unexpected(c.error());
      if (!*c) return tl::unexpected("no campaign '" + o_.campaign + "' in " + store_->db().path());
      campaign_id_ = (*c)->id;
    }
    (void)agent_seen(*store_, info_, "idle");
    int failures = 0;
    while (!stopping() && (o_.max_jobs == 0 || summary_.done < o_.max_jobs)) {
      auto job = claim(*store_, info_.name, o_.vantage, campaign_id_);
      if (!job) {
        if (++failures >= 10) return tl::unexpected("the store keeps failing: " + job.error());
        o_.log("store: " + job.error() + "; reconnecting");
        nap();
        (void)connect();
        continue;
      }
      failures = 0;
      if (!*job) {
        if (o_.exit_when_idle) {
          auto open = has_open_jobs(*store_, o_.vantage, campaign_id_);
          if (open && !*open) break;
        }
        (void)agent_seen(*store_, info_, "idle");
        nap();
        continue;
      }
      work(**job);
    }
    summary_.stopped = stopping();
    (void)agent_seen(*store_, info_, "stopped");
    return summary_;
  }

 private:
  bool stopping() const { return o_.stop && o_.stop->load(); }

  void nap() {
    auto until = Clock::now() + o_.poll;
    while (!stopping() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  tl::expected<void, Error> connect() {
    auto s = store::Store::open(o_.db);
    if (!s) return tl::unexpected(s.error());
    store_ = std::make_unique<store::Store>(std::move(*s));
    return {};
  }

  tl::expected<const Campaign*, Error> campaign_of(const Job& job) {
    if (auto hit = campaigns_.find(job.campaign_id); hit != campaigns_.end()) return &hit->second;
    auto c = campaign_by_id(*store_, job.campaign_id);
    if (!c) return tl::unexpected(c.error());
    if (!*c) return tl::unexpected(fmt::format("campaign {} is gone", job.campaign_id));
    // The list once per campaign, written whole before any scan reads it.
    auto path = targets_file(**c);
    std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << (*c)->spec.targets;
      if (!(*c)->spec.targets.empty() && (*c)->spec.targets.back() != '\n') out << '\n';
      if (!out.flush()) return tl::unexpected("cannot write " + tmp);
    }
    fs::rename(tmp, path);
    return &campaigns_.emplace(job.campaign_id, std::move(**c)).first->second;
  }

  std::string targets_file(const Campaign& c) const { return fmt::format("{}/campaign-{}.targets", o_.work_dir, c.id); }

  // Runs one child while renewing the job's lease; false when the lease was lost or we are stopping.
  int run_with_lease(const std::vector<std::string>& argv, const std::string& log_path, const Job& job,
                     const Campaign& c, bool& lost) {
    auto every = std::chrono::milliseconds(std::max<int64_t>(200, c.spec.lease_ms / 3));
    auto next = Clock::now() + every;
    cli::ChildOptions options;
    options.output = log_path;
    options.keep_going = [&] {
      if (stopping()) return false;
      if (Clock::now() < next) return true;
      next = Clock::now() + every;
      auto ours = heartbeat(*store_, job);
      if (ours && !*ours) lost = true;
      (void)agent_seen(*store_, info_, "working", job.id);
      return !lost;
    };
    return cli::run_child(argv, options);
  }

  void work(const Job& job) {
    auto t0 = Clock::now();
    auto c = campaign_of(job);
    if (!c) {
      o_.log(fmt::format("job {}: {}; given back", job.id, c.error()));
      (void)release(*store_, job, c.error());
      ++summary_.given_back;
      return;
    }
    const Campaign& campaign = **c;
    std::string tag = fmt::format("job {} ({} shard {}/{}, attempt {})", job.id, campaign.spec.name, job.shard,
                                  campaign.spec.shards, job.attempts);
    o_.log(tag + ": claimed");
    (void)agent_seen(*store_, info_, "working", job.id);
    std::string base = fmt::format("{}/job-{}-{}", o_.work_dir, job.id, job.attempts);
    std::string scan_out = base + "-scan.jsonl", trace_out = base + "-trace.jsonl", log = base + ".log";
    std::error_code ec;
    fs::remove(scan_out, ec);
    fs::remove(trace_out, ec);

    std::string snis;
    for (const auto& s : campaign.spec.snis) snis += (snis.empty() ? "" : ",") + s;
    std::vector<std::string> scan{o_.self, "scan", "-i", targets_file(campaign), "--shard",
                                  fmt::format("{}/{}", job.shard, campaign.spec.shards), "--sni", snis};
    scan.insert(scan.end(), campaign.spec.args.begin(), campaign.spec.args.end());
    scan.insert(scan.end(), {"-o", scan_out, "--quiet", "--vantage", o_.vantage});
    bool lost = false;
    int rc = run_with_lease(scan, log, job, campaign, lost);
    if (!give_up_if(job, tag, rc, lost, "scan", log)) return;
    auto counts = count_records(scan_out);

    bool traced = false;
    if (campaign.spec.trace && counts.intercepted > 0) {
      std::vector<std::string> trace{o_.self, "trace", "--from-scan", scan_out, "-o", trace_out, "--quiet",
                                     "--vantage", o_.vantage};
      auto extra = cli::trace_args_of(campaign.spec.args);
      trace.insert(trace.end(), extra.begin(), extra.end());
      rc = run_with_lease(trace, base + "-trace.log", job, campaign, lost);
      if (!give_up_if(job, tag, rc, lost, "trace", base + "-trace.log")) return;
      traced = true;
    }

    // The results and "done" in one transaction, or nothing.
    tl::expected<std::optional<JobResult>, Error> stored;
    for (int attempt = 0; attempt < 5; ++attempt) {
      stored = store_results(job, campaign, scan_out, traced ? trace_out : "", counts);
      if (stored || !retryable(stored.error())) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50 << attempt));
    }
    if (!stored) {
      o_.log(tag + ": storing the results failed: " + stored.error() + "; given back");
      (void)release(*store_, job, "storing the results failed: " + stored.error());
      ++summary_.given_back;
      return;
    }
    if (!*stored) {
      o_.log(tag + ": another agent holds the job now (our lease ran out); our results dropped");
      ++summary_.lost;
      return;
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    o_.log(fmt::format("{}: done in {:.1f} s: {} records, {} intercepted; run {}{}", tag, secs, counts.records,
                       counts.intercepted, (*stored)->scan_run ? std::to_string(*(*stored)->scan_run) : "none",
                       (*stored)->trace_run ? fmt::format(", trace run {}", *(*stored)->trace_run) : ""));
    ++summary_.done;
    (void)agent_seen(*store_, info_, "idle", std::nullopt, true);
    for (const auto& f : {scan_out, trace_out, log, base + "-trace.log"}) fs::remove(f, ec);
  }

  // False (and the job given back or dropped) unless the child finished well.
  bool give_up_if(const Job& job, const std::string& tag, int rc, bool lost, const char* what, const std::string& log) {
    if (lost) {
      o_.log(tag + ": another agent holds the job now (our lease ran out); " + what + " stopped");
      ++summary_.lost;
      return false;
    }
    if (stopping()) {
      o_.log(tag + ": stopping; the job goes back to the queue");
      (void)release(*store_, job, "its agent was stopped", false);
      ++summary_.given_back;
      return false;
    }
    if (rc == 0) return true;
    std::string why = fmt::format("{} exited {}: {}", what, rc, last_line_of(log));
    o_.log(tag + ": " + why + " (log: " + log + "); given back");
    (void)release(*store_, job, why);
    ++summary_.given_back;
    return false;
  }

  tl::expected<std::optional<JobResult>, Error> store_results(const Job& job, const Campaign& c,
                                                              const std::string& scan_out, const std::string& trace_out,
                                                              const ScanCounts& counts) {
    auto tx = store_->transaction();
    if (!tx) return tl::unexpected(tx.error());
    auto ours = lock_if_claimed(*store_, job);
    if (!ours) return tl::unexpected(ours.error());
    if (!*ours) return std::optional<JobResult>();
    JobResult r;
    r.records = counts.records;
    r.intercepted = counts.intercepted;
    auto put = [&](const std::string& path, const char* command) -> tl::expected<std::optional<int64_t>, Error> {
      if (path.empty() || !fs::exists(path) || fs::file_size(path) == 0) return std::optional<int64_t>();
      store::RunInfo info;
      info.command = command;
      info.vantage = o_.vantage;
      info.series = c.spec.name;
      info.source = fmt::format("campaign {} job {} shard {}/{} agent {}", c.spec.name, job.id, job.shard,
                                c.spec.shards, o_.name);
      auto stats = store::import_jsonl(*store_, path, info, {}, 5000, &*tx);
      if (!stats) return tl::unexpected(stats.error());
      if (!stats->run_id) return std::optional<int64_t>();
      if (auto ok = store_->finish_run(stats->run_id, "complete"); !ok) return tl::unexpected(ok.error());
      return std::optional<int64_t>(stats->run_id);
    };
    auto scan_run = put(scan_out, "scan");
    if (!scan_run) return tl::unexpected(scan_run.error());
    r.scan_run = *scan_run;
    auto trace_run = put(trace_out, "trace");
    if (!trace_run) return tl::unexpected(trace_run.error());
    r.trace_run = *trace_run;
    if (auto ok = mark_done(*store_, job, r); !ok) return tl::unexpected(ok.error());
    if (auto ok = tx->commit(); !ok) return tl::unexpected(ok.error());
    return std::optional<JobResult>(r);
  }

  const AgentOptions& o_;
  AgentInfo info_;
  std::unique_ptr<store::Store> store_;
  int64_t campaign_id_ = 0;
  std::map<int64_t, Campaign> campaigns_;
  AgentSummary summary_;
};

}  // namespace

tl::expected<AgentSummary, Error> run_agent(const AgentOptions& o) { return Agent(o).run(); }

}  // namespace mw::fleet
