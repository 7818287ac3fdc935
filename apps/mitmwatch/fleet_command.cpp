// campaign create|status|results and agent: many vantages measuring one
// campaign through one store (PostgreSQL for a fleet, SQLite on one machine).
#include "cli/progress.hpp"
#include "commands.hpp"
#include "fleet/agent.hpp"
#include "io/duration.hpp"
#include "io/jsonl.hpp"
#include "target_input.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <sstream>

namespace mw::app {
namespace {

std::atomic<bool> g_agent_stop{false};
extern "C" void on_agent_signal(int) { g_agent_stop = true; }

std::vector<std::string> split_list(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::stringstream in(item);
    for (std::string part; std::getline(in, part, ',');)
      if (!part.empty()) out.push_back(part);
  }
  return out;
}

std::string read_all(const std::string& path, const char* what) {
  if (path == "-") {
    std::stringstream s;
    s << std::cin.rdbuf();
    return s.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(std::string(what) + " " + path + ": cannot open file");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

store::Store open_store(const std::string& db) {
  auto st = store::Store::open(db);
  if (!st) throw UsageError("--db " + st.error());
  return std::move(*st);
}

fleet::Campaign need_campaign(store::Store& st, const std::string& name) {
  auto c = fleet::find_campaign(st, name);
  if (!c) throw std::runtime_error(c.error());
  if (!*c) throw UsageError("no campaign '" + name + "' in " + st.db().path() + " (see mitmwatch campaign status)");
  return **c;
}

struct CreateFlags {
  std::string db = store::default_db_path();
  std::string name, input;
  // One value each, split at commas: a list option would take a following "--" as its end.
  std::string snis = "facebook.com,google.com";
  std::string vantages;
  int64_t shards = 0;
  int64_t shard_lines = 500;
  bool trace = false;
  std::string lease = "2m";
  int64_t attempts = 3;
  std::vector<std::string> scan_args;
};

int run_create(const CreateFlags& f) {
  fleet::CampaignSpec spec;
  spec.name = f.name;
  spec.targets = read_all(f.input, "-i");
  spec.snis = split_list({f.snis});
  for (const auto& s : spec.snis) check_domain(s, "--sni");
  spec.vantages = split_list({f.vantages});
  spec.args = f.scan_args;
  spec.trace = f.trace;
  auto lease = io::parse_duration(f.lease);
  if (!lease) throw UsageError("--lease " + lease.error());
  spec.lease_ms = lease->count();
  spec.max_attempts = f.attempts;
  int64_t lines = fleet::count_target_lines(spec.targets);
  if (f.shard_lines < 1) throw UsageError("--shard-lines must be at least 1");
  spec.shards = f.shards > 0 ? f.shards : std::max<int64_t>(1, (lines + f.shard_lines - 1) / f.shard_lines);
  if (auto ok = fleet::check_spec(spec); !ok) throw UsageError(ok.error());
  auto st = open_store(f.db);
  auto c = fleet::create_campaign(st, spec);
  if (!c) throw UsageError(c.error());
  fmt::print(stderr, "campaign '{}' (id {}): {} target lines x {} SNI{} from {} vantage{}: {} jobs of {} shards each\n",
             spec.name, c->id, c->target_lines, spec.snis.size(), spec.snis.size() == 1 ? "" : "s",
             spec.vantages.size(), spec.vantages.size() == 1 ? "" : "s", spec.vantages.size() * spec.shards,
             spec.shards);
  fmt::print(stderr, "start an agent at each vantage, e.g.:\n  mitmwatch agent --db '{}' --vantage {}\n",
             st.db().path(), spec.vantages.front());
  fmt::print("{}\n", c->id);
  return cli::kExitOk;
}

struct StatusFlags {
  std::string db = store::default_db_path();
  std::string name;
  bool json = false;
};

void print_status(const nlohmann::ordered_json& s) {
  const auto& j = s["jobs"];
  fmt::print("campaign {} (id {}): {} target lines, SNIs {}, {} shards a vantage{}\n", s["campaign"].get<std::string>(),
             s["id"].get<int64_t>(), s["targets"].get<int64_t>(), s["snis"].dump(), s["shards"].get<int64_t>(),
             s["trace"].get<bool>() ? ", traced" : "");
  fmt::print("jobs: {} done, {} running, {} queued, {} failed of {}{}\n", j["done"].get<int64_t>(),
             j["running"].get<int64_t>(), j["queued"].get<int64_t>(), j["failed"].get<int64_t>(),
             j["total"].get<int64_t>(), s["complete"].get<bool>() ? " (complete)" : "");
  fmt::print("{:<16} {:>6} {:>8} {:>7} {:>7} {:>9} {:>12} {:>7}\n", "vantage", "done", "running", "queued", "failed",
             "records", "intercepted", "share");
  for (const auto& v : s["per_vantage"])
    fmt::print("{:<16} {:>6} {:>8} {:>7} {:>7} {:>9} {:>12} {:>6.1f}%\n", v["vantage"].get<std::string>(),
               v["done"].get<int64_t>(), v["running"].get<int64_t>(), v["queued"].get<int64_t>(),
               v["failed"].get<int64_t>(), v["records"].get<int64_t>(), v["intercepted"].get<int64_t>(),
               100 * v["share"].get<double>());
  for (const auto& r : s["running"])
    fmt::print("running: job {} ({} shard {}) on {}, attempt {}, lease {:.0f} s left\n", r["job"].get<int64_t>(),
               r["vantage"].get<std::string>(), r["shard"].get<int64_t>(), r["agent"].get<std::string>(),
               r["attempt"].get<int64_t>(), r["lease_left_ms"].get<int64_t>() / 1000.0);
  for (const auto& r : s["failed"])
    fmt::print("failed: job {} ({} shard {}) after {} attempts: {}\n", r["job"].get<int64_t>(),
               r["vantage"].get<std::string>(), r["shard"].get<int64_t>(), r["attempts"].get<int64_t>(),
               r["error"].get<std::string>());
  for (const auto& a : s["agents"])
    fmt::print("agent {} ({}, {} pid {}): {}{}, {} jobs done, seen {:.0f} s ago\n", a["name"].get<std::string>(),
               a["vantage"].get<std::string>(), a["host"].get<std::string>(), a["pid"].get<int64_t>(),
               a["state"].get<std::string>(), a["job"].is_null() ? "" : fmt::format(" job {}", a["job"].get<int64_t>()),
               a["jobs_done"].get<int64_t>(), a["seen_ago_ms"].get<int64_t>() / 1000.0);
}

int run_status(const StatusFlags& f) {
  auto st = open_store(f.db);
  std::vector<fleet::Campaign> list;
  if (!f.name.empty()) {
    list.push_back(need_campaign(st, f.name));
  } else {
    auto all = fleet::campaigns(st);
    if (!all) throw std::runtime_error(all.error());
    list = std::move(*all);
    if (list.empty() && !f.json) fmt::print(stderr, "no campaign in {} (mitmwatch campaign create)\n", st.db().path());
  }
  for (size_t i = 0; i < list.size(); ++i) {
    auto s = fleet::campaign_status(st, list[i]);
    if (!s) throw std::runtime_error(s.error());
    if (f.json) {
      fmt::print("{}\n", s->dump());
    } else {
      if (i) fmt::print("\n");
      print_status(*s);
    }
  }
  return cli::kExitOk;
}

struct ResultsFlags {
  std::string db = store::default_db_path();
  std::string name, vantage, kind, output = "-";
};

int run_results(const ResultsFlags& f) {
  auto st = open_store(f.db);
  auto c = need_campaign(st, f.name);
  if (!f.vantage.empty() &&
      std::find(c.spec.vantages.begin(), c.spec.vantages.end(), f.vantage) == c.spec.vantages.end())
    throw UsageError("--vantage " + f.vantage + ": campaign '" + f.name + "' has no such vantage");
  auto runs = fleet::result_runs(st, c, f.vantage, f.kind);
  if (!runs) throw std::runtime_error(runs.error());
  auto out = io::JsonlWriter::open(f.output, false);
  if (!out) throw UsageError("-o " + out.error());
  std::string write_error;
  size_t n = 0;
  for (int64_t run : *runs) {
    auto ok = st.for_each_record(run, [&](const nlohmann::ordered_json& r) {
      ++n;
      if (auto w = out->write(r); !w && write_error.empty()) write_error = w.error();
    });
    if (!ok) throw std::runtime_error(ok.error());
    if (!write_error.empty()) throw std::runtime_error(write_error);
  }
  (void)out->sync();
  fmt::print(stderr, "campaign {}: {} records from {} runs\n", f.name, n, runs->size());
  return cli::kExitOk;
}

struct AgentFlags {
  std::string db = store::default_db_path();
  std::string vantage, name, campaign, work_dir;
  bool exit_when_idle = false;
  int max_jobs = 0;
  std::string poll = "5s";
  bool quiet = false;
};

int run_agent_command(const AgentFlags& f) {
  auto poll = io::parse_duration(f.poll);
  if (!poll) throw UsageError("--poll " + poll.error());
  if (poll->count() < 50) throw UsageError("--poll must be at least 50ms");
  if (f.max_jobs < 0) throw UsageError("--max-jobs must be >= 0");
  fleet::AgentOptions o;
  o.self = self_exe();
  o.db = f.db;
  o.vantage = f.vantage;
  o.name = f.name.empty() ? fmt::format("{}-{}-{}", f.vantage, store::host_name(), getpid()) : f.name;
  o.campaign = f.campaign;
  o.exit_when_idle = f.exit_when_idle;
  o.max_jobs = f.max_jobs;
  o.poll = *poll;
  o.work_dir = f.work_dir.empty() ? fmt::format("{}/agent-{}", store::files_dir_of(f.db), o.name) : f.work_dir;
  bool quiet = f.quiet;
  o.log = [&o, quiet](const std::string& line) {
    if (!quiet) fmt::print(stderr, "[{}] agent {}: {}\n", io::utc_time(static_cast<int64_t>(time(nullptr)) * 1000),
                           o.name, line);
  };
  o.stop = &g_agent_stop;
  std::signal(SIGINT, on_agent_signal);
  std::signal(SIGTERM, on_agent_signal);
  o.log(fmt::format("vantage {}, store {}, work in {}", o.vantage, store::redact_url(o.db), o.work_dir));
  auto summary = fleet::run_agent(o);
  if (!summary) throw std::runtime_error(summary.error());
  o.log(fmt::format("{}: {} jobs done, {} given back, {} lost to another agent",
                    summary->stopped ? "stopped" : "finished", summary->done, summary->given_back, summary->lost));
  return summary->stopped ? cli::kExitFailure : cli::kExitOk;
}

}  // namespace

Action add_campaign_command(CLI::App& app) {
  app.require_subcommand(1);
  app.footer(R"(A campaign is a target list x test SNIs x vantages, kept in the store as jobs:
each vantage's share of the list is cut into --shards jobs (scan's own --shard I/N),
and `mitmwatch agent --vantage NAME` at each vantage claims them, scans (and with
--trace traces what it found intercepted), and stores the records with the job's
completion. For a fleet, use one PostgreSQL store that every vantage reaches:

  mitmwatch campaign create kz-dec --db postgresql://mw@db.example/mw -i kz-hosts.txt \
      --sni facebook.com,google.com --vantages us-east,kz-almaty,kz-astana --trace
  mitmwatch agent --db postgresql://mw@db.example/mw --vantage kz-almaty     (at each vantage)
  mitmwatch campaign status kz-dec --db postgresql://mw@db.example/mw
  mitmwatch campaign results kz-dec --db ... --vantage kz-almaty -o almaty.jsonl
  mitmwatch report --compare --db ... -o compare.html

Exit codes: 0 done, 1 runtime failure, 2 bad usage.)");
  auto* create = app.add_subcommand("create", "Create a campaign and its jobs; prints its id");
  auto cf = std::make_shared<CreateFlags>();
  create->add_option("name", cf->name, "The campaign's name (one word)")->required();
  add_store_flag(*create, cf->db);
  create->add_option("-i,--input", cf->input, "The targets, as scan -i reads them ('-': stdin)")->required();
  create->add_option("--sni", cf->snis, "Test SNIs, comma-separated")->capture_default_str();
  create->add_option("--vantages", cf->vantages, "Vantage names, comma-separated: a job per shard for each")->required();
  create->add_option("--shards", cf->shards, "Jobs per vantage (default: one per --shard-lines target lines)");
  create->add_option("--shard-lines", cf->shard_lines, "Target lines per job when --shards is not given")
      ->capture_default_str();
  create->add_flag("--trace", cf->trace, "Trace what each job finds intercepted (agents need root or CAP_NET_RAW)");
  create->add_option("--lease", cf->lease, "A claimed job returns to the queue this long after its agent's last heartbeat")
      ->capture_default_str();
  create->add_option("--attempts", cf->attempts, "Claims of a job before it is failed")->capture_default_str();
  create->add_option("scan", cf->scan_args, "Further scan flags, after -- (e.g. -- --rate 100 --ca-file roots.pem)");

  auto* status = app.add_subcommand("status", "Jobs by state and vantage, agents, failures (all campaigns without NAME)");
  auto sf = std::make_shared<StatusFlags>();
  status->add_option("name", sf->name, "The campaign");
  add_store_flag(*status, sf->db);
  status->add_flag("--json", sf->json, "One JSON object a campaign");

  auto* results = app.add_subcommand("results", "Write a campaign's records as JSON Lines");
  auto rf = std::make_shared<ResultsFlags>();
  results->add_option("name", rf->name, "The campaign")->required();
  add_store_flag(*results, rf->db);
  results->add_option("--vantage", rf->vantage, "Only this vantage's records");
  results->add_option("--kind", rf->kind, "Only scan or trace records")->check(CLI::IsMember({"scan", "trace"}));
  results->add_option("-o,--output", rf->output, "Where to write (default: stdout)");

  return [create, status, cf, sf, rf] {
    if (create->parsed()) return run_create(*cf);
    if (status->parsed()) return run_status(*sf);
    return run_results(*rf);
  };
}

Action add_agent_command(CLI::App& app) {
  auto f = std::make_shared<AgentFlags>();
  app.footer(R"(Claims the jobs of its vantage from the store's campaigns, one at a time: runs
the job's scan (and trace) as this program's own child, renews the job's lease
while it runs, and stores its records in the transaction that marks it done. A
killed agent's job returns to the queue when its lease runs out (campaign
create --lease); an agent whose lease ran out drops its results, so nothing is
stored twice. SIGINT or SIGTERM gives the running job back at once.

Examples:
  mitmwatch agent --db postgresql://mw@db.example/mw --vantage kz-almaty
  sudo mitmwatch agent --db postgresql:///mw?host=/run/postgresql --vantage lab --exit-when-idle

Exit codes: 0 done (idle or --max-jobs), 1 stopped by a signal or a store failure, 2 bad usage.)");
  add_store_flag(app, f->db);
  app.add_option("--vantage", f->vantage, "Where this agent measures from: it takes that vantage's jobs")->required();
  app.add_option("--name", f->name, "This agent's name (default: VANTAGE-HOST-PID)");
  app.add_option("--campaign", f->campaign, "Only this campaign's jobs");
  app.add_flag("--exit-when-idle", f->exit_when_idle, "Stop once the vantage has no job queued or running");
  app.add_option("--max-jobs", f->max_jobs, "Stop after this many jobs (0: no limit)")->capture_default_str();
  app.add_option("--poll", f->poll, "Wait between looks for work when there is none")->capture_default_str();
  app.add_option("--work-dir", f->work_dir, "Scratch files of the running job (default: beside the store)");
  app.add_flag("-q,--quiet", f->quiet, "No log lines");
  return [f] { return run_agent_command(*f); };
}

}  // namespace mw::app
