// `mitmwatch trace`: flags and wiring only; the TTL search is src/drivers/trace.cpp.
#include "certs/registry.hpp"
#include "cli/progress.hpp"
#include "commands.hpp"
#include "drivers/trace.hpp"
#include "io/jsonl.hpp"
#include "net/asn_db.hpp"
#include "net/capture.hpp"
#include "net/privileges.hpp"
#include "target_input.hpp"

#include <fmt/format.h>

#include <csignal>
#include <fstream>
#include <unistd.h>
#include <unordered_set>

namespace mw::app {
namespace {

// Signal handlers reach only static storage: the one flag main's thread polls.
std::atomic<bool> g_trace_stop{false};
extern "C" void on_trace_signal(int) { g_trace_stop = true; }

struct TraceFlags : OutputFlags {
  TargetFlags targets;
  std::string from_scan;
  std::string sni = "facebook.com";
  std::string control;
  int max_ttl = 32;
  size_t concurrency = 500;
  double rate = 0;
  double hop_rate = 100;
  int window = 8;
  int hop_retries = 2;
  int runs = 1;
  int max_runs = 3;
  double connect_timeout = 5;
  double probe_timeout = 2;
  double handshake_timeout = 5;
  std::string source_ip;
  std::string ca_file, ca_dir, interceptors;
  std::vector<std::string> asn_dbs;
  std::string pcap;
  std::string interface = "any";
  std::string user = net::default_unprivileged_user();
  std::string summarize;
};

std::string resume_key(const std::string& target, const std::string& sni) { return target + "\t" + sni; }

// The (target, SNI) pairs a scan found intercepted.
std::vector<drivers::TraceTarget> read_scan_file(const std::string& path, const net::TargetFilter& filter,
                                                 const net::OptOut& opt_out) {
  net::PrefixSet reserved(filter.reserved()), opted_out(filter.opted_out);
  std::ifstream in(path);
  if (!in) throw UsageError("--from-scan " + path + ": cannot open file");
  std::vector<drivers::TraceTarget> out;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    auto r = nlohmann::json::parse(line, nullptr, false);
    if (r.is_discarded() || !r.is_object())
      throw UsageError(fmt::format("--from-scan {}: line {}: not a JSON object", path, n));
    if (r.value("verdict", "") != "intercepted" || !r["target"].is_string() || !r["sni"].is_string()) continue;
    auto spec = net::parse_target(r["target"].get<std::string>(), 443, false);
    if (!spec || spec->prefix.count() != 1)
      throw UsageError(fmt::format("--from-scan {}: line {}: bad target '{}'", path, n, r["target"].dump()));
    if (reserved.contains(spec->prefix.base))
      throw UsageError(fmt::format("--from-scan {}: line {}: {} is reserved or private (--allow-private traces it)",
                                   path, n, spec->prefix.base.to_string()));
    // Owners who asked not to be measured, by address or by name.
    if (opted_out.contains(spec->prefix.base) || opt_out.covers_name(r["sni"].get<std::string>())) continue;
    out.push_back({{spec->prefix.base, spec->port}, r["sni"].get<std::string>()});
  }
  return out;
}

int summarize_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("--summarize " + path + ": cannot open file");
  trace::TraceSummary summary;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    auto r = nlohmann::json::parse(line, nullptr, false);
    if (r.is_discarded()) throw UsageError(fmt::format("--summarize {}: line {}: not JSON", path, n));
    summary.add(r);
  }
  fmt::print("{}", summary.render());
  return cli::kExitOk;
}

int run_trace(const TraceFlags& f) {
  if (!f.summarize.empty()) return summarize_file(f.summarize);
  // 1. Validate everything before anything is opened or sent.
  std::vector<drivers::TraceTarget> listed;
  std::unique_ptr<net::TargetStream> stream;
  if (!f.from_scan.empty()) {
    listed = read_scan_file(f.from_scan, target_filter(f.targets), opt_out_of(f.targets));
    stream = open_targets(f.targets, false);
  } else {
    check_domain(f.sni, "--sni");
    if (opt_out_of(f.targets).covers_name(f.sni)) throw UsageError("--sni " + f.sni + " is on the opt-out list");
    stream = open_targets(f.targets);
  }
  drivers::TraceOptions o;
  if (f.control.empty()) o.control_sni = random_control_name();
  else if (f.control != "none") {
    check_domain(f.control, "--control");
    o.control_sni = f.control;
  }
  if (f.max_ttl < 1 || f.max_ttl > 255) throw UsageError("--max-ttl must be 1..255");
  if (f.concurrency < 1 || f.concurrency > 100000) throw UsageError("--concurrency must be 1..100000");
  if (f.rate < 0 || f.hop_rate < 0) throw UsageError("--rate and --hop-rate must be >= 0");
  if (f.window < 1 || f.window > 255) throw UsageError("--window must be 1..255");
  if (f.hop_retries < 0 || f.hop_retries > 10) throw UsageError("--hop-retries must be 0..10");
  if (f.runs < 1 || f.max_runs < f.runs || f.max_runs > 20) throw UsageError("need 1 <= --runs <= --max-runs <= 20");
  if (f.connect_timeout <= 0 || f.probe_timeout <= 0 || f.handshake_timeout <= 0)
    throw UsageError("timeouts must be > 0 seconds");
  o.max_ttl = f.max_ttl;
  o.concurrency = f.concurrency;
  o.rate = f.rate;
  o.hop_rate = f.hop_rate;
  o.window = f.window;
  o.hop_retries = f.hop_retries;
  o.runs = f.runs;
  o.max_runs = f.max_runs;
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<long>(s * 1000)); };
  o.connect_timeout = ms(f.connect_timeout);
  o.probe_timeout = ms(f.probe_timeout);
  o.handshake_timeout = ms(f.handshake_timeout);
  if (!f.source_ip.empty()) {
    auto ip = net::IpAddress::parse(f.source_ip);
    if (!ip) throw UsageError("--source-ip: " + ip.error());
    o.source_ip = *ip;
  }
  tl::expected<tls::TrustStore, std::string> trust =
      !f.ca_dir.empty() ? tls::TrustStore::from_dir(f.ca_dir)
                        : tls::TrustStore::from_file(f.ca_file.empty() ? tls::TrustStore::kSystemBundle : f.ca_file);
  if (!trust) throw UsageError(trust.error());
  auto registry = f.interceptors.empty() ? certs::InterceptorRegistry::builtin()
                                         : certs::InterceptorRegistry::from_file(f.interceptors);
  if (!registry) throw UsageError("--interceptors " + registry.error());
  net::AsnLookup asn;
  for (const auto& path : f.asn_dbs) {
    auto db = net::AsnDatabase::open(path);
    if (!db) throw UsageError("--asn-db " + db.error());
    asn.add(std::move(*db));
  }
  auto profile = tls::ClientProfile::browser_like();
  if (!profile) throw std::runtime_error(profile.error());
  check_output(f);

  // 2. The privileged part: the capture (CAP_NET_RAW), then files; then no
  // privilege at all for the rest of the run.
  auto capture = net::LiveCapture::open(f.interface, drivers::trace_capture_filter());
  if (!capture) throw std::runtime_error("trace reads routers' ICMP time-exceeded from a packet capture: " + capture.error());
  std::optional<net::PcapWriter> pcap;
  if (!f.pcap.empty()) {
    auto w = net::PcapWriter::open(*capture, f.pcap);
    if (!w) throw UsageError(w.error());
    pcap = std::move(*w);
  }
  trace::TraceSummary summary;
  std::unordered_set<std::string> done;
  if (f.resume) {
    auto n = io::recover(f.output, [&](const nlohmann::json& r) {
      if (r.value("schema", "") != trace::kTraceSchema || !r["target"].is_string() || !r["trigger_sni"].is_string())
        return;
      if (done.insert(resume_key(r["target"].get<std::string>(), r["trigger_sni"].get<std::string>())).second)
        summary.add(r);
    });
    if (!n) throw UsageError(n.error());
    if (!f.quiet) fmt::print(stderr, "resume: {} records already in {}\n", *n, f.output);
  }
  auto out = store::RecordSink::open(sink_options(f, "trace"));
  if (!out) throw std::runtime_error(out.error());
  // Everything privileged is open (capture, raw socket) and every file too:
  // the rest runs as an unprivileged user with no capabilities.
  auto dropped = net::drop_to_user(f.user);
  if (!dropped) throw std::runtime_error("giving up privileges: " + dropped.error());
  if (!f.quiet) fmt::print(stderr, "trace: sockets open; running as {}\n", dropped->describe());

  // 3. Run.
  std::optional<uint64_t> total;
  if (listed.empty()) total = stream->count();
  else total = listed.size();
  bool tty = isatty(STDERR_FILENO) && !f.quiet;
  cli::ProgressBar bar(stderr, tty, total, "targets");
  std::signal(SIGINT, on_trace_signal);
  std::signal(SIGTERM, on_trace_signal);
  std::signal(SIGPIPE, SIG_IGN);

  size_t next_listed = 0;
  uint64_t skipped_done = 0;
  std::string write_error;
  drivers::TraceHooks hooks;
  hooks.stop = &g_trace_stop;
  hooks.next_target = [&]() -> std::optional<drivers::TraceTarget> {
    for (;;) {
      std::optional<drivers::TraceTarget> t;
      if (!f.from_scan.empty()) {
        if (next_listed < listed.size()) t = listed[next_listed++];
      } else if (auto e = stream->next()) {
        t = drivers::TraceTarget{*e, f.sni};
      }
      if (!t) return std::nullopt;
      if (!done.count(resume_key(t->endpoint.to_string(), t->trigger_sni))) return t;
      ++skipped_done;
    }
  };
  hooks.on_record = [&](trace::TargetTrace&& t) {
    if (!write_error.empty()) return;
    auto json = trace::to_json(t, &asn);
    if (auto ok = out->write(json); !ok) write_error = ok.error();
    // Names from a hostile server's certificate may not be UTF-8: replaced, as the writer does.
    summary.add(nlohmann::json::parse(json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)));
  };
  hooks.on_packet = [&](const net::CapturedPacket& pkt) {
    if (pcap) pcap->write(pkt);
  };
  hooks.on_progress = [&](const drivers::TraceStats& s) {
    bar.update(s.targets_done + skipped_done,
               fmt::format("{} probes in flight, {} located", s.in_flight,
                           s.by_verdict[static_cast<int>(trace::Verdict::before_server)] +
                               s.by_verdict[static_cast<int>(trace::Verdict::at_server)]));
    if (!write_error.empty()) g_trace_stop = true;
  };
  auto t0 = std::chrono::steady_clock::now();
  drivers::Tracer tracer(o, *profile, *trust, *registry, *capture);
  auto stats = tracer.run(hooks);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bar.finish();
  if (pcap) pcap->flush();
  if (auto ok = out->finish(!stats.stopped && write_error.empty()); !ok && write_error.empty()) write_error = ok.error();
  if (!write_error.empty()) throw std::runtime_error(write_error);

  if (!o.control_sni.empty() && !f.quiet) fmt::print(stderr, "control SNI: {}\n", o.control_sni);
  fmt::print(stderr, "{}", summary.render());
  fmt::print(stderr, "{} probes in {:.1f} s; ICMP errors matched {} ({} by sequence number), unmatched {}; capture drops {}\n",
             stats.probes, secs, stats.icmp_matched, stats.icmp_by_sequence, stats.icmp_unmatched, capture->dropped());
  if (stats.stopped) {
    fmt::print(stderr, "interrupted: {} records written; run again with --resume to finish\n", stats.targets_done);
    return cli::kExitFailure;
  }
  return cli::kExitOk;
}

}  // namespace

Action add_trace_command(CLI::App& app) {
  auto f = std::make_shared<TraceFlags>();
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.footer(R"(Locates an interception device on the path, as the report's hop-level analysis:
for each target, TCP connects at full TTL, then sends the ClientHello with TTL 1, 2, 3 ...
(one connection per probe). The first TTL answered by a forged chain is the injector's
hop; the same search with the control SNI finds the server's own distance. Routers'
ICMP time-exceeded messages name the hops on either side; they are matched to probes
by the quoted IP/TCP headers. Needs CAP_NET_RAW (root) for the packet capture, which
is opened first; every privilege is dropped after.

Verdicts: before-server (injector_hop < server_hop), at-server, not-observed (no forged
chain), inconsistent (runs or TTLs disagree), unreachable.

Examples:
  mitmwatch trace 203.0.113.7 --sni facebook.com -o trace.jsonl
  mitmwatch trace --from-scan kz.jsonl --runs 2 --asn-db GeoLite2-ASN.mmdb -o trace.jsonl
  mitmwatch trace -i hosts.txt --concurrency 1 --window 1    # one probe at a time
  mitmwatch trace --summarize trace.jsonl
  jq -r 'select(.verdict=="before-server") | [.target, .injector_before, .injector_after] | @tsv' trace.jsonl

Exit codes: 0 done, 1 runtime failure or interrupted (resume with --resume), 2 bad usage.)");
  add_target_options(app, f->targets);
  app.add_option("--from-scan", f->from_scan, "Trace the (target, SNI) pairs a scan file found intercepted");
  app.add_option("--sni", f->sni, "Trigger SNI")->capture_default_str();
  app.add_option("--control", f->control, "Control SNI; 'none' sends no SNI (default: a random name under example.com)");
  app.add_option("--max-ttl", f->max_ttl, "Highest TTL probed")->capture_default_str();
  app.add_option("-c,--concurrency", f->concurrency, "Probes (TCP connections) in flight at once")->capture_default_str();
  app.add_option("--rate", f->rate, "At most this many new probes per second (0: no cap)")->capture_default_str();
  app.add_option("--hop-rate", f->hop_rate, "Probes per second expiring at one router (routers rate-limit ICMP)")
      ->capture_default_str();
  app.add_option("--window", f->window, "Probes in flight per (target, SNI)")->capture_default_str();
  app.add_option("--hop-retries", f->hop_retries, "Probes again a TTL that stayed silent")->capture_default_str();
  app.add_option("--runs", f->runs, "Runs that must agree per target")->capture_default_str();
  app.add_option("--max-runs", f->max_runs, "Runs at most per target before 'inconsistent'")->capture_default_str();
  app.add_option("--connect-timeout", f->connect_timeout, "Seconds for the TCP connect")->capture_default_str();
  app.add_option("--probe-timeout", f->probe_timeout, "Seconds of silence after the ClientHello before giving up")
      ->capture_default_str();
  app.add_option("--handshake-timeout", f->handshake_timeout, "Seconds to read the chain once an answer began")
      ->capture_default_str();
  app.add_option("--source-ip", f->source_ip, "Send from this local address");
  app.add_option("--ca-file", f->ca_file, "Root store: PEM bundle (default: the system's Mozilla bundle)");
  app.add_option("--ca-dir", f->ca_dir, "Root store: a directory of PEM files");
  app.add_option("--interceptors", f->interceptors, "Registry of known interception roots (default: built in)");
  app.add_option("--asn-db", f->asn_dbs, "MaxMind-format database(s) for each hop's AS and country (repeatable)")
      ->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--pcap", f->pcap, "Write every packet of the trace (probes, answers, ICMP) to FILE");
  app.add_option("--interface", f->interface, "Capture on this interface")->capture_default_str();
  app.add_option("--user", f->user, "Once the capture and raw sockets are open, run as this user with no capabilities")
      ->capture_default_str();
  add_output_options(app, *f, "trace", "No progress bar or notes; the summary still goes to stderr");
  app.add_option("--summarize", f->summarize, "Print the aggregate of an existing trace file and exit");
  return [f] { return run_trace(*f); };
}

}  // namespace mw::app
