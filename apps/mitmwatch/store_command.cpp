// import, runs, export: moving records between JSON Lines and the store.
#include "cli/progress.hpp"
#include "commands.hpp"
#include "io/duration.hpp"
#include "io/jsonl.hpp"
#include "store/import.hpp"
#include "target_input.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>

namespace mw::app {
namespace {

struct ImportFlags {
  std::vector<std::string> files;
  std::string db = store::default_db_path();
  std::string vantage;
  size_t batch = 5000;
  bool quiet = false;
};

int run_import(const ImportFlags& f) {
  uint64_t total = 0;
  for (const auto& path : f.files) {
    std::error_code ec;
    if (path == "-") continue;
    auto size = std::filesystem::file_size(path, ec);
    if (ec) throw UsageError(fmt::format("{}: {}", path, ec.message()));
    total += size;
  }
  auto st = store::Store::open(f.db);
  if (!st) throw std::runtime_error("--db " + st.error());
  bool tty = isatty(STDERR_FILENO) && !f.quiet;
  cli::ProgressBar bar(stderr, tty, total / 1024, "KiB");
  uint64_t done = 0, added = 0, already = 0;
  for (const auto& path : f.files) {
    store::RunInfo info;
    info.vantage = f.vantage.empty() ? store::host_name() : f.vantage;
    info.args = command_line();
    auto stats =
        store::import_jsonl(*st, path, info, [&](uint64_t bytes) { bar.update((done + bytes) / 1024); }, f.batch);
    if (!stats) {
      bar.finish();
      throw std::runtime_error(stats.error() + " (records before it are in the store; fix the line and import again)");
    }
    bar.finish();
    if (path != "-") done += std::filesystem::file_size(path);
    added += stats->added;
    already += stats->already;
    if (!f.quiet)
      fmt::print(stderr, "{}: run {}: {} records new, {} already stored{}\n", path, stats->run_id, stats->added,
                 stats->already, stats->torn_last_line ? "; a torn last line skipped" : "");
  }
  if (!f.quiet) fmt::print(stderr, "{}: {} records added, {} already there\n", f.db, added, already);
  return cli::kExitOk;
}

struct RunsFlags {
  std::string db = store::default_db_path();
  std::string command, series;
  bool json = false;
};

std::string iso_time(std::optional<int64_t> ms) {
  return ms ? io::utc_time(*ms) : "-";
}

int run_runs(const RunsFlags& f) {
  auto st = store::Store::open_read_only(f.db);
  if (!st) throw UsageError("--db " + st.error());
  auto runs = st->runs(f.command, f.series);
  if (!runs) throw std::runtime_error(runs.error());
  if (!f.json) fmt::print("{:>5}  {:<9} {:<14} {:<20} {:<11} {:>8} {:>11}  {}\n", "id", "command", "vantage", "started",
                          "status", "records", "intercepted", "source");
  for (const auto& r : *runs) {
    if (f.json) {
      nlohmann::ordered_json j{{"id", r.id},           {"uid", r.uid},         {"command", r.command},
                               {"vantage", r.vantage}, {"series", r.series},   {"source", r.source},
                               {"status", r.status},   {"records", r.records}, {"intercepted", r.intercepted},
                               {"blocked", r.blocked}, {"clean", r.clean},     {"unreachable", r.unreachable}};
      j["started_ms"] = r.started_ms ? nlohmann::ordered_json(*r.started_ms) : nlohmann::ordered_json(nullptr);
      j["ended_ms"] = r.ended_ms ? nlohmann::ordered_json(*r.ended_ms) : nlohmann::ordered_json(nullptr);
      fmt::print("{}\n", j.dump());
    } else {
      fmt::print("{:>5}  {:<9} {:<14} {:<20} {:<11} {:>8} {:>11}  {}\n", r.id, r.command, r.vantage,
                 iso_time(r.started_ms), r.status, r.records, r.intercepted, r.source);
    }
  }
  return cli::kExitOk;
}

struct ExportFlags {
  std::string db = store::default_db_path();
  std::vector<int64_t> runs;
  std::string output = "-";
};

int run_export(const ExportFlags& f) {
  auto st = store::Store::open_read_only(f.db);
  if (!st) throw UsageError("--db " + st.error());
  auto out = io::JsonlWriter::open(f.output, false);
  if (!out) throw std::runtime_error(out.error());
  for (int64_t id : f.runs) {
    auto run = st->run(id);
    if (!run) throw std::runtime_error(run.error());
    if (!*run) throw UsageError(fmt::format("--run {}: no such run in {} (see mitmwatch runs)", id, f.db));
    std::string write_error;
    auto ok = st->for_each_record(id, [&](const nlohmann::ordered_json& r) {
      if (auto w = out->write(r); !w && write_error.empty()) write_error = w.error();
    });
    if (!ok) throw std::runtime_error(ok.error());
    if (!write_error.empty()) throw std::runtime_error(write_error);
  }
  (void)out->sync();
  return cli::kExitOk;
}

}  // namespace

Action add_import_command(CLI::App& app) {
  auto f = std::make_shared<ImportFlags>();
  app.footer(R"(Each file becomes one run, named by its first record: importing a file again,
or after a --resume made it longer, adds only the records the store lacks. Any
JSON Lines the project writes can be imported (scan, trace, sweep, fpserver, pcap).
A torn last line (a killed writer's) is skipped; a line that is not a record stops
the import with its file and line number.

Examples:
  mitmwatch import kz.jsonl trace.jsonl
  mitmwatch import --db study.db --vantage kz-vps-1 scans/*.jsonl
  mitmwatch runs --db study.db)");
  app.add_option("files", f->files, "JSON Lines files ('-': stdin)")->required()->check(CLI::ExistingFile | CLI::IsMember({"-"}));
  add_store_flag(app, f->db);
  app.add_option("--vantage", f->vantage, "Where the records were measured from (default: this host's name)");
  app.add_option("--batch", f->batch,
                 "Records per transaction: a killed import keeps every whole batch, and loses at most one")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  app.add_flag("-q,--quiet", f->quiet, "No progress bar or counts");
  return [f] { return run_import(*f); };
}

Action add_runs_command(CLI::App& app) {
  auto f = std::make_shared<RunsFlags>();
  add_store_flag(app, f->db);
  app.add_option("--command", f->command, "Only runs of this command (scan, trace, sweep, monitor, ...)");
  app.add_option("--series", f->series, "Only the rounds of this monitor");
  app.add_flag("--json", f->json, "JSON Lines instead of a table");
  return [f] { return run_runs(*f); };
}

Action add_export_command(CLI::App& app) {
  auto f = std::make_shared<ExportFlags>();
  app.footer("Writes the records of runs as they were written, chains included.\n\nExample:\n"
             "  mitmwatch export --run 3 | jq -r 'select(.verdict==\"intercepted\") | .target'");
  app.add_option("--run", f->runs, "Run id (see mitmwatch runs); repeatable")->required();
  add_store_flag(app, f->db);
  app.add_option("-o,--output", f->output, "Write to FILE (default: stdout)");
  return [f] { return run_export(*f); };
}

}  // namespace mw::app
