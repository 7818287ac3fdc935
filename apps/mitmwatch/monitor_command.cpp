// mitmwatch monitor: scan rounds on a schedule, each stored as a run of one
// series; change points between rounds become events (stored, logged, and
// handed to a hook). A round is this same program's `scan` (and `trace`), run
// as a child: every scan flag works, a crash costs one round, and each round
// leaves its JSONL file like any scan.
#include "cli/child_process.hpp"
#include "cli/progress.hpp"
#include "commands.hpp"
#include "io/duration.hpp"
#include "io/jsonl.hpp"
#include "monitor/changes.hpp"
#include "target_input.hpp"

#include <fmt/format.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

namespace mw::app {
namespace {

std::atomic<bool> g_monitor_stop{false};
extern "C" void on_monitor_signal(int) { g_monitor_stop = true; }

struct MonitorFlags {
  std::string every = "10m";
  int rounds = 0;
  std::string name = "default";
  std::string db = store::default_db_path();
  std::string vantage;
  std::string out_dir;
  std::string on_change;
  std::string on_round;
  std::string events;
  double hook_timeout = 30;
  bool trace = false;
  double share_delta = 0.10;
  bool quiet = false;
  std::vector<std::string> scan_args;
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A user's command, by /bin/sh, with one JSON document on its stdin; the
// monitor waits for it (bounded by --hook-timeout) so that what it does
// happens before the next round.
void run_hook(const MonitorFlags& f, const char* flag, const nlohmann::ordered_json& j, const std::string& command) {
  if (command.empty()) return;
  cli::ChildOptions options;
  options.input = j.dump() + "\n";
  options.limit = std::chrono::milliseconds(static_cast<int64_t>(f.hook_timeout * 1000));
  if (int rc = cli::run_child({"/bin/sh", "-c", command}, options); rc != 0)
    fmt::print(stderr, "monitor: {} exited {} for {}\n", flag, rc, j.dump());
}

std::optional<int64_t> run_of_file(store::Store& st, const std::string& path) {
  std::ifstream in(path);
  std::string first;
  if (!std::getline(in, first) || first.empty()) return std::nullopt;
  auto j = nlohmann::ordered_json::parse(first, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  auto q = st.db().prepare("SELECT id FROM runs WHERE uid = ?1");
  if (!q) return std::nullopt;
  q->bind(1, store::run_uid_of_first_record(j));
  auto row = q->step();
  if (!row || !*row) return std::nullopt;
  return q->int64(0);
}

int run_monitor(const MonitorFlags& f) {
  auto every = io::parse_duration(f.every);
  if (!every) throw UsageError("--every " + every.error());
  if (every->count() < 100) throw UsageError("--every must be at least 100ms");
  if (f.rounds < 0) throw UsageError("--rounds must be >= 0 (0: until stopped)");
  if (f.scan_args.empty())
    throw UsageError("give the scan to repeat after --, e.g. monitor --every 10m -- -i hosts.txt --sni facebook.com");
  for (const auto& a : f.scan_args)
    if (a == "-o" || a == "--output" || a == "--db" || a.rfind("--db=", 0) == 0 || a == "--resume" || a == "--vantage")
      throw UsageError("scan argument " + a + ": the monitor sets it for each round");
  if (f.name.empty() || f.name.find_first_of("/ \t") != std::string::npos)
    throw UsageError("--name '" + f.name + "': one word, no '/'");
  auto st = store::Store::open(f.db);
  if (!st) throw std::runtime_error("--db " + st.error());
  std::string vantage = f.vantage.empty() ? store::host_name() : f.vantage;
  std::string dir = f.out_dir.empty() ? (std::filesystem::path(store::files_dir_of(f.db)) / ("monitor-" + f.name)).string()
                                      : f.out_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw UsageError("--out-dir " + dir + ": " + ec.message());
  std::optional<io::JsonlWriter> event_log;
  if (!f.events.empty()) {
    auto w = io::JsonlWriter::open(f.events, true);
    if (!w) throw UsageError("--events " + w.error());
    event_log.emplace(std::move(*w));
  }
  // Resuming a series: its stored rounds are the baseline, so a restart raises no false events.
  auto history = monitor::history_of(*st, f.name);
  if (!history) throw std::runtime_error(history.error());
  monitor::Thresholds thresholds;
  thresholds.min_share_delta = f.share_delta;

  std::signal(SIGINT, on_monitor_signal);
  std::signal(SIGTERM, on_monitor_signal);
  const std::string self = self_exe();
  if (!f.quiet)
    fmt::print(stderr, "monitor '{}': a round every {} from {} into {}{}\n", f.name, io::format_duration(*every),
               vantage, f.db, history->rounds ? fmt::format(" ({} earlier rounds)", history->rounds) : "");

  auto t0 = std::chrono::steady_clock::now();
  int failures = 0;
  for (int round = 0; f.rounds == 0 || round < f.rounds; ++round) {
    // Rounds keep to their slots (t0 + k·every) so they do not drift; one that overran starts at once.
    auto slot = t0 + round * *every;
    while (!g_monitor_stop && std::chrono::steady_clock::now() < slot)
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(slot - std::chrono::steady_clock::now(),
                                                                               std::chrono::milliseconds(50)));
    if (g_monitor_stop) break;
    int64_t started = now_ms();
    std::string file = fmt::format("{}/round-{}-{}.jsonl", dir, started, round + 1);
    std::vector<std::string> scan{self, "scan"};
    scan.insert(scan.end(), f.scan_args.begin(), f.scan_args.end());
    for (const char* a : {"--quiet", "--db"}) scan.push_back(a);
    scan.insert(scan.end(), {f.db, "--vantage", vantage, "--series", f.name, "-o", file});
    int rc = cli::run_child(scan);
    auto scan_run = run_of_file(*st, file);
    if (rc != 0 || !scan_run) {
      ++failures;
      fmt::print(stderr, "monitor: round {}: the scan {} ({}); next round as scheduled\n", round + 1,
                 rc == 0 ? "wrote no records" : fmt::format("exited {}", rc), file);
      continue;
    }
    auto summary = monitor::summarize_round(*st, *scan_run, std::nullopt);
    if (!summary) throw std::runtime_error(summary.error());

    // Trace what became intercepted since the last round.
    std::optional<int64_t> trace_run;
    if (f.trace && summary->intercepted > 0) {
      std::set<std::string> before;
      if (history->last)
        for (const auto& h : history->last->hits) before.insert(h.target + "\t" + h.sni);
      std::string fresh = fmt::format("{}/trace-input-{}.jsonl", dir, round + 1);
      size_t n = 0;
      {
        std::ofstream out(fresh);
        std::ifstream in(file);
        for (std::string line; std::getline(in, line);) {
          auto j = nlohmann::json::parse(line, nullptr, false);
          if (j.is_discarded() || j.value("verdict", "") != "intercepted") continue;
          if (before.count(j.value("target", "") + "\t" + j.value("sni", ""))) continue;
          out << line << "\n";
          ++n;
        }
      }
      if (n > 0) {
        std::string traced = fmt::format("{}/trace-{}-{}.jsonl", dir, started, round + 1);
        std::vector<std::string> trace{self, "trace", "--from-scan", fresh, "--quiet", "--db", f.db, "--vantage",
                                       vantage,  "--series", f.name, "-o", traced};
        auto extra = cli::trace_args_of(f.scan_args);
        trace.insert(trace.end(), extra.begin(), extra.end());
        cli::ChildOptions bounded;
        bounded.limit = std::chrono::hours(6);
        if (int trc = cli::run_child(trace, bounded); trc != 0)
          fmt::print(stderr, "monitor: round {}: the trace exited {}\n", round + 1, trc);
        trace_run = run_of_file(*st, traced);
        if (trace_run) summary = monitor::summarize_round(*st, *scan_run, trace_run);
        if (!summary) throw std::runtime_error(summary.error());
      }
      std::filesystem::remove(fresh, ec);
    }

    auto changes = monitor::detect(*history, *summary, thresholds);
    if (!f.quiet)
      fmt::print(stderr, "[{}] round {}: {} of {} intercepted ({:.1f} %){}\n", io::utc_time(started), round + 1,
                 summary->intercepted, summary->judged, 100 * summary->share(),
                 changes.empty() ? "" : fmt::format(", {} event{}", changes.size(), changes.size() == 1 ? "" : "s"));
    run_hook(f, "--on-round",
             nlohmann::ordered_json{{"schema", "mitmwatch.round/1"}, {"series", f.name},   {"vantage", vantage},
                                    {"round", history->rounds},        {"at_ms", started},  {"run_id", *scan_run},
                                    {"judged", summary->judged},       {"intercepted", summary->intercepted},
                                    {"share", summary->share()},       {"events", changes.size()}},
             f.on_round);
    for (auto& c : changes) {
      store::Event e;
      e.run_id = *scan_run;
      e.series = f.name;
      e.vantage = vantage;
      e.at_ms = started;
      e.type = c.type;
      e.subject = c.subject;
      e.details = c.details;
      e.details["round"] = history->rounds;  // of the series, counting earlier runs
      auto id = st->add_event(e);
      if (!id) throw std::runtime_error(id.error());
      nlohmann::ordered_json j{{"schema", "mitmwatch.event/1"}, {"id", *id},           {"series", f.name},
                               {"vantage", vantage},             {"at_ms", started},   {"type", c.type},
                               {"subject", c.subject},           {"run_id", *scan_run}, {"details", e.details}};
      fmt::print(stderr, "[{}] event {}: {}\n", io::utc_time(started), c.type, c.subject);
      if (event_log) (void)event_log->write(j);
      run_hook(f, "--on-change", j, f.on_change);
    }
  }
  if (!f.quiet) fmt::print(stderr, "monitor '{}': stopped{}\n", f.name, failures ? fmt::format(" ({} rounds failed)", failures) : "");
  return g_monitor_stop ? cli::kExitFailure : cli::kExitOk;
}

}  // namespace

Action add_monitor_command(CLI::App& app) {
  auto f = std::make_shared<MonitorFlags>();
  app.footer(R"(Repeats a scan (everything after --, as `mitmwatch scan` takes it) every --every,
storing each round as a run of the series --name, and reports change points:

  interception-started   no record intercepted last round, some now
  interception-stopped   the reverse
  share-moved            the intercepted share moved by >= --share-delta and beyond chance (z >= 3)
  new-issuer             a forged chain's issuer never seen in this series
  new-trigger            an SNI intercepted for the first time in this series
  device-moved           with --trace: a target's injection hop pair changed

The first round is the baseline. Events go to stderr, the store (mitmwatch serve
shows them), --events FILE (JSON Lines), and --on-change CMD, run by /bin/sh with
the event's JSON on stdin. A restarted monitor takes its series' stored rounds as
its baseline. Each round's records also stay in a JSONL file (--out-dir).
--on-round CMD gets each round's summary (series, round, run_id, judged,
intercepted, share, events) before the next round starts, e.g. to feed a
metrics system.

Examples:
  mitmwatch monitor --every 10m --name kz -- -i kz-hosts.txt --sni facebook.com,google.com
  mitmwatch monitor --every 1h --trace --on-change 'jq -r .subject | mail -s mitm me@example.org' -- -i hosts.txt
  mitmwatch report --series kz -o kz.html

Exit codes: 0 done (--rounds reached), 1 stopped by a signal or a failure, 2 bad usage.)");
  app.add_option("--every", f->every, "Time between round starts: 90s, 10m, 1h")->capture_default_str();
  app.add_option("--rounds", f->rounds, "Stop after N rounds (0: until stopped)")->capture_default_str();
  app.add_option("--name", f->name, "The series: rounds of one name are compared with each other")->capture_default_str();
  add_store_flag(app, f->db);
  app.add_option("--vantage", f->vantage, "Where this runs from (default: the host name)");
  app.add_option("--out-dir", f->out_dir, "Where rounds' JSONL files go (default: monitor-NAME beside the store)");
  app.add_flag("--trace", f->trace, "Trace the targets that became intercepted (root or CAP_NET_RAW)");
  app.add_option("--on-change", f->on_change, "Run CMD (by /bin/sh) for each event, its JSON on stdin");
  app.add_option("--on-round", f->on_round, "Run CMD (by /bin/sh) after each round, its summary as JSON on stdin");
  app.add_option("--hook-timeout", f->hook_timeout, "Seconds before --on-change or --on-round is killed")
      ->capture_default_str();
  app.add_option("--events", f->events, "Append each event to FILE (JSON Lines)");
  app.add_option("--share-delta", f->share_delta, "Smallest share change that is an event")->capture_default_str();
  app.add_flag("-q,--quiet", f->quiet, "Only events on stderr");
  app.add_option("scan", f->scan_args, "The scan's arguments, after --")->required();
  app.positionals_at_end();
  return [f] { return run_monitor(*f); };
}

}  // namespace mw::app
