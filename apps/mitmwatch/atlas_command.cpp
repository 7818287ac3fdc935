// mitmwatch atlas define|import: RIPE Atlas sslcert measurements.
#include "cli/progress.hpp"
#include "commands.hpp"
#include "drivers/atlas.hpp"
#include "target_input.hpp"

#include <fmt/format.h>

#include <fstream>

namespace mw::app {
namespace {

struct AtlasFlags {
  // define
  TargetFlags targets;
  std::string sni = "facebook.com";
  std::string control = "example.com";
  std::string country, asn, probe_ids, area;
  int requested = 10;
  std::string output = "-";
  // import
  std::vector<std::string> test_files, control_files;
  std::string probes_file, ca_file, interceptors, db;
  bool overwrite = false;
};

std::string slurp(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(fmt::format("{} {}: cannot read", what, path));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

int run_define(const AtlasFlags& f) {
  check_domain(f.sni, "--sni");
  check_domain(f.control, "--control");
  drivers::AtlasSelection sel;
  int chosen = !f.country.empty() + !f.asn.empty() + !f.probe_ids.empty() + !f.area.empty();
  if (chosen != 1) throw UsageError("choose the probes with one of --country, --asn, --probe-ids, --area");
  if (!f.country.empty()) {
    if (f.country.size() != 2) throw UsageError("--country " + f.country + ": a two-letter ISO code (KZ)");
    sel = {"country", f.country, f.requested};
  } else if (!f.asn.empty()) {
    if (f.asn.find_first_not_of("0123456789") != std::string::npos) throw UsageError("--asn " + f.asn + ": a number");
    sel = {"asn", f.asn, f.requested};
  } else if (!f.probe_ids.empty()) {
    sel = {"probes", f.probe_ids, f.requested};
  } else {
    sel = {"area", f.area, f.requested};
  }
  if (f.requested < 1 || f.requested > 1000) throw UsageError("--probes must be 1..1000");
  auto stream = open_targets(f.targets);
  std::vector<net::Endpoint> targets;
  while (auto t = stream->next()) targets.push_back(*t);
  if (targets.empty()) throw UsageError("no targets");
  auto body = drivers::atlas_definitions(targets, f.sni, f.control, sel).dump(2) + "\n";
  if (f.output == "-") {
    fmt::print("{}", body);
  } else {
    std::ofstream(f.output) << body;
  }
  fmt::print(stderr,
             "atlas define: {} measurements ({} targets x test {} and control {}) from {} probes ({} {}). Nothing was "
             "sent: POST it to https://atlas.ripe.net/api/v2/measurements/ with your key, then fetch each "
             "measurement's results for `mitmwatch atlas import`.\n",
             2 * targets.size(), targets.size(), f.sni, f.control, sel.requested, sel.type, sel.value);
  return cli::kExitOk;
}

int run_import(const AtlasFlags& f) {
  std::map<int64_t, drivers::AtlasProbe> probes;
  if (!f.probes_file.empty()) {
    auto p = drivers::parse_atlas_probes(slurp(f.probes_file, "--probes-file"), f.probes_file);
    if (!p) throw UsageError(p.error());
    probes = std::move(*p);
  }
  auto read_all = [&](const std::vector<std::string>& files, const std::string& sni) {
    std::vector<drivers::AtlasResult> out;
    for (const auto& path : files) {
      auto r = drivers::parse_atlas_sslcert(slurp(path, "results"), path, sni);
      if (!r) throw UsageError(r.error());
      for (auto& x : *r) out.push_back(std::move(x));
    }
    return out;
  };
  auto tests = read_all(f.test_files, f.sni);
  auto controls = read_all(f.control_files, f.control);
  auto trust = tls::TrustStore::from_file(f.ca_file.empty() ? tls::TrustStore::kSystemBundle : f.ca_file);
  if (!trust) throw UsageError("--ca-file " + trust.error());
  auto registry = f.interceptors.empty() ? certs::InterceptorRegistry::builtin()
                                         : certs::InterceptorRegistry::from_file(f.interceptors);
  if (!registry) throw UsageError("--interceptors " + registry.error());
  OutputFlags out_flags;
  out_flags.output = f.output;
  out_flags.overwrite = f.overwrite;
  check_output(out_flags);
  auto records = drivers::judge_atlas(std::move(tests), std::move(controls), f.sni, f.control, *trust, *registry, probes);

  auto out = io::JsonlWriter::open(f.output, false);
  if (!out) throw std::runtime_error(out.error());
  std::unique_ptr<store::Store> st;
  if (!f.db.empty()) {
    auto s = store::Store::open(f.db);
    if (!s) throw std::runtime_error("--db " + s.error());
    st = std::make_unique<store::Store>(std::move(*s));
  }
  std::map<std::string, int> verdicts;
  std::map<int64_t, std::vector<const drivers::AtlasRecord*>> by_probe;
  for (const auto& r : records) {
    if (auto ok = out->write(r.record); !ok) throw std::runtime_error(ok.error());
    ++verdicts[r.record["verdict"].get<std::string>()];
    by_probe[r.probe].push_back(&r);
  }
  // A probe is a vantage, so a run: written one after the other (one transaction at a time).
  if (st)
    for (const auto& [probe, list] : by_probe) {
      store::RunInfo info;
      info.command = "scan";
      info.vantage = list.front()->vantage;
      info.source = f.test_files.front();
      info.args = command_line();
      store::RunWriter w(*st, info);
      for (const auto* r : list)
        if (auto ok = w.add(r->record); !ok) throw std::runtime_error(ok.error());
      if (auto ok = w.finish("imported"); !ok) throw std::runtime_error(ok.error());
    }
  (void)out->sync();
  std::string tally;
  for (const auto& [v, n] : verdicts) tally += fmt::format("{}{} {}", tally.empty() ? "" : ", ", n, v);
  fmt::print(stderr, "atlas import: {} records from {} probes: {}\n", records.size(), by_probe.size(),
             tally.empty() ? "none" : tally);
  return cli::kExitOk;
}

}  // namespace

Action add_atlas_command(CLI::App& app) {
  auto f = std::make_shared<AtlasFlags>();
  app.require_subcommand(1);
  app.footer(R"(The study's 52 RIPE Atlas probes, as a tool. `define` writes the measurement
definitions (one sslcert with the trigger SNI and one with a control, per target)
for you to submit to the Atlas API; nothing is sent from here. `import` reads the
results the API returns and pairs each probe's test with its control, judged by
the scan's rules: mitmwatch.scan/1 records, each with an "atlas" object (probe,
measurements, ASN and country with --probes-file); with --db, a run per probe,
named atlas-PROBE[-ASn-CC] as its vantage.

Examples:
  mitmwatch atlas define --country KZ --probes 50 --sni facebook.com 93.184.216.34 > defs.json
  mitmwatch atlas import --test test-results.json --control control-results.json --sni facebook.com \
      --control-sni example.com --probes-file probes.json -o atlas.jsonl --db
  mitmwatch report --compare)");
  auto* define = app.add_subcommand("define", "Write sslcert measurement definitions for the Atlas API");
  add_target_options(*define, f->targets);
  define->add_option("--sni", f->sni, "The trigger SNI")->capture_default_str();
  define->add_option("--control", f->control, "The control SNI")->capture_default_str();
  define->add_option("--country", f->country, "Probes in this country (ISO code)");
  define->add_option("--asn", f->asn, "Probes in this AS");
  define->add_option("--probe-ids", f->probe_ids, "These probes, comma-separated");
  define->add_option("--area", f->area, "Probes in this area (WW, West, ...)");
  define->add_option("--probes", f->requested, "How many probes")->capture_default_str();
  define->add_option("-o,--output", f->output, "Write the JSON to FILE (default: stdout)");
  auto* import = app.add_subcommand("import", "Read sslcert results into scan records");
  import->add_option("--test", f->test_files, "Results of the test-SNI measurement(s)")->required()->check(CLI::ExistingFile);
  import->add_option("--control", f->control_files, "Results of the control measurement(s)")->check(CLI::ExistingFile);
  import->add_option("--sni", f->sni, "The SNI the test measurement sent")->capture_default_str();
  import->add_option("--control-sni", f->control, "The SNI the control sent")->capture_default_str();
  import->add_option("--probes-file", f->probes_file, "Probe metadata from /api/v2/probes/ (ASN, country)");
  import->add_option("--ca-file", f->ca_file, "Root store (default: the system's)");
  import->add_option("--interceptors", f->interceptors, "Registry of known interception roots (default: built in)");
  import->add_option("-o,--output", f->output, "Write records to FILE (default: stdout)");
  import->add_flag("--overwrite", f->overwrite, "Replace a non-empty -o FILE");
  add_db_option(*import, f->db, "Also keep the records in the store, a run per probe");
  return [f, define, import] { return define->parsed() ? run_define(*f) : run_import(*f); };
}

}  // namespace mw::app
