// `mitmwatch sweep`: flags and wiring only; the driver is src/drivers/sweep.cpp.
#include "cli/progress.hpp"
#include "commands.hpp"
#include "drivers/sweep.hpp"
#include "io/jsonl.hpp"
#include "target_input.hpp"

#include <fmt/format.h>

#include <csignal>
#include <fstream>
#include <set>
#include <unistd.h>
#include <unordered_set>

namespace mw::app {
namespace {

// Signal handlers can only reach a flag with static storage; only main's thread reads it.
std::atomic<bool> g_sweep_stop{false};
extern "C" void on_sweep_signal(int) { g_sweep_stop = true; }

struct SweepFlags : OutputFlags {
  TargetFlags servers;
  std::string domains_file;
  std::vector<std::string> domains;
  std::string from_scan;
  std::string control;
  std::string hello_template = "chrome";
  bool allow_tls13 = false;
  bool infer_rule = false;
  int retries = 2;
  size_t concurrency = 500;
  double rate = kDefaultRate;
  double per_target_rate = kDefaultPerTargetRate;
  double connect_timeout = 5;
  double handshake_timeout = 10;
  std::string ca_file;
  std::string triggers_out;
};

std::vector<net::TargetSpec> servers_from_scan(const std::string& path, const net::TargetFilter& filter) {
  net::PrefixSet reserved(filter.reserved()), opted_out(filter.opted_out);
  std::ifstream in(path);
  if (!in) throw UsageError("--from-scan " + path + ": cannot open file");
  std::vector<net::TargetSpec> out;
  std::set<std::string> seen;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    auto r = nlohmann::json::parse(line, nullptr, false);
    if (r.is_discarded() || !r.is_object())
      throw UsageError(fmt::format("--from-scan {}: line {}: not a JSON object", path, n));
    if (r.value("verdict", "") != "intercepted" || !r.contains("target") || !r["target"].is_string()) continue;
    std::string target = r["target"].get<std::string>();
    if (!seen.insert(target).second) continue;
    auto spec = net::parse_target(target, 443, false);
    if (!spec || spec->prefix.count() != 1)
      throw UsageError(fmt::format("--from-scan {}: line {}: bad target '{}'", path, n, target));
    if (reserved.contains(spec->prefix.base))
      throw UsageError(fmt::format("--from-scan {}: line {}: {} is reserved or private (--allow-private)", path, n,
                                   spec->prefix.base.to_string()));
    if (opted_out.contains(spec->prefix.base)) continue;  // its owner asked not to be measured
    out.push_back(*spec);
  }
  if (out.empty()) throw UsageError("--from-scan " + path + ": no intercepted targets in it");
  return out;
}

struct Phase {
  const char* name;
  std::vector<drivers::SweepCase> cases;
};

int run_sweep(const SweepFlags& f) {
  // 1. Validate everything before anything is written.
  std::vector<net::Endpoint> servers;
  {
    std::unique_ptr<net::TargetStream> stream;
    if (!f.from_scan.empty()) {
      auto filter = target_filter(f.servers);
      stream = std::make_unique<net::TargetStream>(servers_from_scan(f.from_scan, filter), filter);
    } else {
      stream = open_targets(f.servers);
    }
    while (auto e = stream->next()) {
      servers.push_back(*e);
      if (servers.size() > 10000) throw UsageError("more than 10,000 servers: a sweep wants a few known to sit behind the device");
    }
  }
  if (servers.empty()) throw UsageError("no servers to sweep (give them as arguments, -i FILE or --from-scan FILE)");
  std::vector<std::string> domains = f.domains;
  if (!f.domains_file.empty())
    for (auto& d : read_lines(f.domains_file, "--domains file")) domains.push_back(d);
  if (domains.empty()) throw UsageError("no domains: give --domains FILE or --domain NAME");
  {
    std::set<std::string> unique;
    std::vector<std::string> kept;
    for (auto& d : domains) {
      check_domain(d, "domain");
      if (unique.insert(d).second) kept.push_back(d);
    }
    domains = without_opted_out(kept, opt_out_of(f.servers), "domains", f.quiet);
    if (domains.empty()) throw UsageError("every domain is on the opt-out list");
  }
  std::string control = f.control.empty() ? random_control_name() : f.control;
  check_domain(control, "--control");
  if (f.retries < 0 || f.retries > 100) throw UsageError("--retries must be 0..100");
  if (f.concurrency < 1 || f.concurrency > 100000) throw UsageError("--concurrency must be 1..100000");
  if (f.rate < 0) throw UsageError("--rate must be >= 0");
  if (f.per_target_rate < 0) throw UsageError("--per-target-rate must be >= 0");
  if (f.connect_timeout <= 0 || f.handshake_timeout <= 0) throw UsageError("timeouts must be > 0 seconds");
  auto tls13 = tls::ClientProfile::tls13_only();
  auto profile = tls::ClientProfile::browser_like();
  if (!tls13 || !profile) throw std::runtime_error("OpenSSL client context: " + (tls13 ? profile.error() : tls13.error()));
  auto tpl = f.hello_template == "openssl" ? hello::template_from_context(profile->get(), "openssl")
                                           : hello::find_template(f.hello_template);
  if (!tpl) throw UsageError("--template: " + tpl.error());
  auto trust = tls::TrustStore::from_file(f.ca_file.empty() ? tls::TrustStore::kSystemBundle : f.ca_file);
  if (!trust) throw UsageError(trust.error());
  auto registry = certs::InterceptorRegistry::builtin();
  check_output(f);

  // 2. Recover what a previous run wrote, then open the output.
  std::unordered_set<std::string> done;
  drivers::Tallies tallies;
  auto count = [&](const nlohmann::json& r) {
    if (r.value("schema", "") != drivers::kSweepSchema) return;
    std::string key = records::record_key(r);
    if (key.empty() || !done.insert(key).second) return;
    auto v = r.value("verdict", "");
    drivers::tally(tallies, r.value("domain", ""), r.value("variant", ""),
                   v == "intercepted" ? verdict::Verdict::intercepted
                   : v == "clean"     ? verdict::Verdict::clean
                   : v == "blocked"   ? verdict::Verdict::blocked
                                      : verdict::Verdict::unreachable);
  };
  if (f.resume) {
    auto n = io::recover(f.output, count);
    if (!n) throw UsageError(n.error());
    if (!f.quiet) fmt::print(stderr, "resume: {} records already in {}\n", *n, f.output);
  }
  auto out = store::RecordSink::open(sink_options(f, "sweep"));
  if (!out) throw std::runtime_error(out.error());

  std::signal(SIGINT, on_sweep_signal);
  std::signal(SIGTERM, on_sweep_signal);
  std::signal(SIGPIPE, SIG_IGN);
  bool tty = isatty(STDERR_FILENO) && !f.quiet;
  std::string write_error;
  auto t0 = std::chrono::steady_clock::now();
  uint64_t handshakes = 0;

  auto run_phase = [&](const Phase& phase) {
    drivers::ScanOptions o;
    for (const auto& c : phase.cases) o.test_snis.push_back(c.label());
    o.control_sni = control;
    o.retries = f.retries;
    o.concurrency = f.concurrency;
    o.rate = f.rate;
    o.per_target_rate = f.per_target_rate;
    o.connect_timeout = std::chrono::milliseconds(static_cast<long>(f.connect_timeout * 1000));
    o.handshake_timeout = std::chrono::milliseconds(static_cast<long>(f.handshake_timeout * 1000));
    drivers::SweepProbes probes(*tpl, !f.allow_tls13, phase.cases, control, *tls13, std::nullopt);
    cli::ProgressBar bar(stderr, tty, servers.size() * phase.cases.size(), phase.name);
    uint64_t records = 0;
    drivers::ScanHooks hooks;
    hooks.stop = &g_sweep_stop;
    hooks.make_probe = [&](const net::Endpoint& t, std::optional<size_t> test, const std::string&) {
      return probes.make(t, test);
    };
    hooks.already_done = [&](const std::string& target, const std::string& sni) {
      return done.count(records::record_key(target, sni)) > 0;
    };
    hooks.on_record = [&](records::ScanRecord&& r) {
      const auto& c = phase.cases.at(r.test_index);
      drivers::tally(tallies, c.domain, c.variant, r.result.verdict);
      ++records;
      if (!write_error.empty()) return;
      if (auto ok = out->write(drivers::sweep_record_json(r, c)); !ok) write_error = ok.error();
    };
    hooks.on_progress = [&](const drivers::ScanStats& s) {
      bar.update(records + s.skipped_done, fmt::format("{} in flight, {} intercepted", s.in_flight,
                                                       s.by_verdict[static_cast<int>(verdict::Verdict::intercepted)]));
      if (!write_error.empty()) g_sweep_stop = true;
    };
    std::vector<net::TargetSpec> specs;
    for (const auto& e : servers) specs.push_back({{e.ip, e.ip.bits()}, e.port, e.to_string()});
    net::TargetFilter filter;
    filter.allow_reserved = true;  // checked above, as the user gave them
    net::TargetStream stream(specs, filter);
    drivers::Scanner scanner(o, *profile, *trust, registry);
    auto stats = scanner.run(stream, hooks);
    bar.finish();
    handshakes += stats.handshakes;
    return stats.stopped;
  };
  auto interrupted = [&] {
    (void)out->finish(false);
    fmt::print(stderr, "interrupted: run again with --resume to finish\n");
    return cli::kExitFailure;
  };

  // 3. The sweep: every domain against every server.
  Phase sweep{"domains", {}};
  for (const auto& d : domains) {
    drivers::SweepCase c;
    c.domain = d;
    c.spec.server_names = {d};
    sweep.cases.push_back(c);
  }
  if (run_phase(sweep)) return interrupted();
  if (!write_error.empty()) throw std::runtime_error(write_error);

  std::vector<std::string> triggers;
  for (const auto& d : domains)
    if (auto it = tallies.find(d); it != tallies.end() && it->second["plain"].intercepted > 0) triggers.push_back(d);
  std::sort(triggers.begin(), triggers.end());
  {
    fmt::print(stderr, "sweep: {} domains x {} servers, control SNI {}\n", domains.size(), servers.size(), control);
    fmt::print(stderr, "triggers: {} of {} domains\n", triggers.size(), domains.size());
    for (const auto& d : triggers) {
      const auto& t = tallies[d]["plain"];
      fmt::print(stderr, "  {:<40} intercepted on {} of {} servers\n", d, t.intercepted, t.intercepted + t.clean + t.blocked + t.other);
    }
  }
  if (!f.triggers_out.empty()) {
    std::ofstream t(f.triggers_out);
    for (const auto& d : triggers) t << d << "\n";
    if (!t) throw std::runtime_error("--triggers-out " + f.triggers_out + ": cannot write");
  }

  // 4. Rule inference: each trigger in variants.
  if (f.infer_rule && !triggers.empty()) {
    Phase infer{"variants", {}};
    for (const auto& d : triggers)
      for (auto& c : drivers::rule_variants(d, control)) infer.cases.push_back(std::move(c));
    if (run_phase(infer)) return interrupted();
    if (!write_error.empty()) throw std::runtime_error(write_error);
    auto rule = drivers::infer_device_rule(tallies, triggers);
    if (auto ok = out->write(drivers::to_json(rule)); !ok) throw std::runtime_error(ok.error());
    fmt::print(stderr, "rule: {}\n", rule.words);
    fmt::print(stderr, "rule (JSON): {}\n", drivers::to_json(rule)["rule"].dump());
  } else if (f.infer_rule) {
    fmt::print(stderr, "rule: no trigger domain found, nothing to infer\n");
  }
  if (auto ok = out->finish(true); !ok) throw std::runtime_error(ok.error());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(stderr, "{} handshakes in {:.1f} s\n", handshakes, secs);
  return cli::kExitOk;
}

}  // namespace

Action add_sweep_command(CLI::App& app) {
  auto f = std::make_shared<SweepFlags>();
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.footer(R"(Which domains trigger interception, and by what rule. Each domain is sent as the
SNI of a raw ClientHello (--template) to each server, with a control SNI, under the
scan's retry/control rule (docs/sweep.md). Servers: a few known to sit behind the
device, e.g. the intercepted targets of a scan (--from-scan).

--infer-rule then sends each trigger again in variants (subdomain, suffix, prefix,
substring, mixed case, trailing dot, TLD swap, empty/no SNI, two server_name entries,
padding, hellos split over records or TCP segments, TLS 1.3, other hello shapes) and
states the device's matching rule, in words on stderr and as a mitmwatch.sweep-rule/1
record at the end of the output.

Examples:
  mitmwatch sweep --domains top10k.txt --from-scan kz.jsonl -o sweep.jsonl
  mitmwatch sweep --domains top10k.txt 192.0.2.10 192.0.2.11 --infer-rule -o sweep.jsonl
  jq -r 'select(.verdict=="intercepted" and .variant=="plain") | .domain' sweep.jsonl | sort -u
  jq 'select(.schema=="mitmwatch.sweep-rule/1") | .rule' sweep.jsonl

Exit codes: 0 done, 1 runtime failure or interrupted (resume with --resume), 2 bad usage.)");
  add_target_options(app, f->servers);
  app.add_option("--domains", f->domains_file, "Domains to test, one a line ('#' comments)");
  app.add_option("--domain", f->domains, "A domain to test (repeatable)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--from-scan", f->from_scan, "Servers: the intercepted targets of these scan records");
  app.add_option("--control", f->control, "Control SNI (default: a random name under example.com)");
  app.add_option("--template", f->hello_template, "ClientHello shape: chrome, firefox, fb2019, minimal12, openssl")
      ->capture_default_str();
  app.add_flag("--allow-tls13", f->allow_tls13,
               "Keep TLS 1.3 in the hello (a server that picks it hides its chain from a raw probe)");
  app.add_flag("--infer-rule", f->infer_rule, "Probe each trigger with variants and state the matching rule");
  app.add_option("--retries", f->retries, "Retries of a test that differs from its control")->capture_default_str();
  app.add_option("-c,--concurrency", f->concurrency, "Handshakes in flight at once")->capture_default_str();
  app.add_option("--per-target-rate", f->per_target_rate,
                 "At most this many new handshakes per second to one address (0: no cap)")
      ->capture_default_str();
  app.add_option("--rate", f->rate, "At most this many new handshakes per second (0: no cap)")->capture_default_str();
  app.add_option("--connect-timeout", f->connect_timeout, "Seconds for the TCP connect")->capture_default_str();
  app.add_option("--handshake-timeout", f->handshake_timeout, "Seconds for the server's flight")->capture_default_str();
  app.add_option("--ca-file", f->ca_file, "Root store: PEM bundle (default: the system's Mozilla bundle)");
  app.add_option("--triggers-out", f->triggers_out, "Write the trigger domains, sorted, to FILE");
  add_output_options(app, *f, "test", "No progress bar or notes");
  return [f] { return run_sweep(*f); };
}

}  // namespace mw::app
