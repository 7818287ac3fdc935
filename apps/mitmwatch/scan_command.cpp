// `mitmwatch scan`: flags and wiring only; the scan loop is src/drivers/scan.cpp.
#include "certs/registry.hpp"
#include "cli/progress.hpp"
#include "cli/scan_summary.hpp"
#include "commands.hpp"
#include "target_input.hpp"
#include "drivers/scan.hpp"
#include "hello/raw_probe.hpp"
#include "io/jsonl.hpp"
#include "net/targets.hpp"
#include "records/scan_record.hpp"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_set>

namespace mw::app {
namespace {

// Signal handlers can only reach a flag with static storage; this is the one
// piece of process-wide state, and only main's thread reads it.
std::atomic<bool> g_stop_requested{false};
extern "C" void on_stop_signal(int) { g_stop_requested = true; }

struct ScanFlags : OutputFlags {
  TargetFlags targets;
  IdentityFlags identity;
  std::vector<std::string> snis;
  std::string sni_file;
  std::string control;
  int retries = 4;
  size_t concurrency = 1000;
  double rate = kDefaultRate;
  double per_target_rate = kDefaultPerTargetRate;
  double connect_timeout = 5;
  double handshake_timeout = 10;
  std::string source_ip;
  std::string ca_file;
  std::string ca_dir;
  std::string interceptors;
  bool select_trusted = false;
  std::string hello = "openssl";
  std::string hello_template = "minimal12";
};

int run_scan(const ScanFlags& f) {
  // 1. Validate everything before anything is written.
  auto stream = open_targets(f.targets);

  drivers::ScanOptions options;
  if (!f.select_trusted) {
    for (const auto& list : f.snis) {
      std::stringstream ss(list);
      std::string item;
      while (std::getline(ss, item, ','))
        if (!item.empty()) options.test_snis.push_back(item);
    }
    if (!f.sni_file.empty())
      for (auto& s : read_lines(f.sni_file, "SNI file")) options.test_snis.push_back(s);
    if (options.test_snis.empty()) options.test_snis = {"facebook.com", "google.com"};  // the report's scan
    for (const auto& s : options.test_snis) check_domain(s, "SNI");
    options.test_snis = without_opted_out(options.test_snis, opt_out_of(f.targets), "test SNIs", f.quiet);
    if (options.test_snis.empty()) throw UsageError("every test SNI is on the opt-out list");
  }
  if (f.control.empty()) options.control_sni = random_control_name();
  else if (f.control != "none") {
    check_domain(f.control, "--control");
    options.control_sni = f.control;
  }
  if (f.retries < 0 || f.retries > 100) throw UsageError("--retries must be 0..100");
  if (f.concurrency < 1 || f.concurrency > 200000) throw UsageError("--concurrency must be 1..200000");
  if (f.rate < 0) throw UsageError("--rate must be >= 0");
  if (f.per_target_rate < 0) throw UsageError("--per-target-rate must be >= 0");
  if (f.connect_timeout <= 0 || f.handshake_timeout <= 0) throw UsageError("timeouts must be > 0 seconds");
  options.retries = f.retries;
  options.concurrency = f.concurrency;
  options.rate = f.rate;
  options.per_target_rate = f.per_target_rate;
  options.connect_timeout = std::chrono::milliseconds(static_cast<long>(f.connect_timeout * 1000));
  options.handshake_timeout = std::chrono::milliseconds(static_cast<long>(f.handshake_timeout * 1000));
  if (!f.source_ip.empty()) {
    auto ip = net::IpAddress::parse(f.source_ip);
    if (!ip) throw UsageError("--source-ip: " + ip.error());
    // Fail now, not once per handshake, when the address is not ours.
    net::Fd probe(::socket(ip->family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage ss;
    socklen_t len = net::Endpoint{*ip, 0}.to_sockaddr(ss);
    if (!probe || ::bind(probe.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
      throw UsageError("--source-ip " + f.source_ip + ": cannot send from it: " + std::strerror(errno));
    options.source_ip = *ip;
  }

  tl::expected<tls::TrustStore, std::string> trust =
      !f.ca_dir.empty() ? tls::TrustStore::from_dir(f.ca_dir)
                        : tls::TrustStore::from_file(f.ca_file.empty() ? tls::TrustStore::kSystemBundle : f.ca_file);
  if (!trust) throw UsageError(trust.error());
  auto registry = f.interceptors.empty() ? certs::InterceptorRegistry::builtin()
                                         : certs::InterceptorRegistry::from_file(f.interceptors);
  if (!registry) throw UsageError("--interceptors " + registry.error());
  if (f.hello != "openssl" && f.hello != "cert-grab") throw UsageError("--hello must be openssl or cert-grab");
  std::string user_agent = probe_user_agent(f.identity);
  if (!user_agent.empty() && f.hello == "cert-grab")
    throw UsageError("--contact/--user-agent need --hello openssl: cert-grab never completes a handshake to send them");
  auto profile = tls::ClientProfile::browser_like(user_agent);
  if (!profile) throw std::runtime_error(profile.error());

  std::optional<hello::Template> grab_template;
  if (f.hello == "cert-grab") {
    auto t = f.hello_template == "openssl" ? hello::template_from_context(profile->get(), "openssl")
                                           : hello::find_template(f.hello_template);
    if (!t) throw UsageError("--template: " + t.error());
    grab_template = std::move(*t);
  }

  if (f.resume && f.select_trusted) throw UsageError("--resume does not apply to --select-trusted");
  check_output(f);

  // 2. Recover what a previous run wrote, then open the output.
  cli::ScanSummary summary;
  std::unordered_set<std::string> done;
  if (f.resume) {
    auto n = io::recover(f.output, [&](const nlohmann::json& r) {
      std::string key = records::record_key(r);
      if (!key.empty() && done.insert(key).second) summary.add(r);
    });
    if (!n) throw UsageError(n.error());
    if (!f.quiet) fmt::print(stderr, "resume: {} records already in {}\n", *n, f.output);
  }
  auto out = store::RecordSink::open(sink_options(f, "scan"));
  if (!out) throw std::runtime_error(out.error());

  auto total_targets = stream->count();
  bool tty = isatty(STDERR_FILENO) && !f.quiet;
  cli::ProgressBar bar(stderr, tty, total_targets, "targets");

  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGPIPE, SIG_IGN);

  drivers::ScanHooks hooks;
  hooks.stop = &g_stop_requested;
  uint64_t trusted_selected = 0;
  std::string write_error;
  hooks.already_done = [&](const std::string& target, const std::string& sni) {
    return done.count(records::record_key(target, sni)) > 0;
  };
  hooks.on_record = [&](records::ScanRecord&& record) {
    if (!write_error.empty()) return;
    if (f.select_trusted) {
      const auto& control = record.attempts.front().observation;
      if (control.ok() && control.trust.trusted) {
        ++trusted_selected;
        if (auto ok = out->write_plain_line(record.target.to_string()); !ok) write_error = ok.error();
      }
      return;
    }
    auto json = records::to_json(record);
    if (auto ok = out->write(json); !ok) write_error = ok.error();
    summary.add(json);
  };
  hooks.on_progress = [&](const drivers::ScanStats& s) {
    bar.update(s.targets_done, fmt::format("{} in flight, {} intercepted", s.in_flight,
                                           s.by_verdict[static_cast<int>(verdict::Verdict::intercepted)]));
    if (!write_error.empty()) g_stop_requested = true;
  };

  hello::ProbeCache probe_cache;
  if (grab_template) {
    // cert-grab: a raw TLS 1.2 hello, the chain read in clear, the connection reset after Certificate.
    hooks.make_probe = [&](const net::Endpoint& target, std::optional<size_t>, const std::string& sni) {
      hello::HelloSpec spec;
      spec.tls12_only = true;
      spec.send_sni = !sni.empty();
      if (spec.send_sni) spec.server_names = {sni};
      uint8_t random[64];
      RAND_bytes(random, sizeof random);
      auto wire = hello::to_wire(hello::build_handshake(grab_template->hello, spec, random),
                                 grab_template->hello.record_version, spec);
      return std::make_unique<hello::RawHelloProbe>(target, std::move(wire), sni, options.source_ip, probe_cache);
    };
  }

  auto t0 = std::chrono::steady_clock::now();
  drivers::Scanner scanner(options, *profile, *trust, *registry);
  auto stats = scanner.run(*stream, hooks);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bar.finish();
  if (auto ok = out->finish(!stats.stopped && write_error.empty()); !ok && write_error.empty()) write_error = ok.error();
  if (!write_error.empty()) throw std::runtime_error(write_error);

  if (stream->skipped_reserved() && !f.quiet)
    fmt::print(stderr, "skipped {} reserved or private addresses (--allow-private scans them)\n",
               stream->skipped_reserved());
  if (stream->skipped_blocklisted() && !f.quiet)
    fmt::print(stderr, "skipped {} blocklisted addresses\n", stream->skipped_blocklisted());
  if (stream->skipped_opted_out() && !f.quiet)
    fmt::print(stderr, "skipped {} addresses on the opt-out list\n", stream->skipped_opted_out());
  if (f.select_trusted) {
    fmt::print(stderr, "select-trusted: {} of {} targets presented a trusted chain ({:.1f} %)\n", trusted_selected,
               stats.targets, stats.targets ? 100.0 * trusted_selected / stats.targets : 0.0);
  } else {
    if (!options.control_sni.empty() && !f.quiet) fmt::print(stderr, "control SNI: {}\n", options.control_sni);
    summary.print(stderr, stats.targets, secs, stats.handshakes);
  }
  if (stats.stopped) {
    fmt::print(stderr, "interrupted: {} records written; run again with --resume to finish\n", stats.records);
    return cli::kExitFailure;
  }
  return cli::kExitOk;
}

}  // namespace

Action add_scan_command(CLI::App& app) {
  auto f = std::make_shared<ScanFlags>();
  // A repeated flag takes its last value, as in most Unix tools.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.footer(R"(Targets: addresses, host:port, CIDR blocks ("192.0.2.0/24:8443", "[2001:db8::1]:443"),
one a line in -i FILE ('#' comments), or on stdin. Reserved and private ranges are
refused unless --allow-private.

Each target gets one handshake per test SNI and one with the control SNI. A test
that differs from the control is retried (--retries); an anomaly stands only after
a fresh control. Verdicts: intercepted, blocked, clean, unreachable. Records are
JSON Lines (schema: docs/schema.md), one per (target, SNI); a summary goes to stderr.

Examples:
  mitmwatch scan -i kz-hosts.txt --sni facebook.com,google.com -o kz.jsonl
  mitmwatch scan 192.0.2.0/24 --sni-file triggers.txt --rate 500 -o out.jsonl --resume
  mitmwatch scan --select-trusted -i all-tls-hosts.txt -o trusted.txt
  mitmwatch scan --allow-private 127.0.0.1:8443 --sni facebook.com --ca-file lab-root.pem --control none
  jq -r 'select(.verdict=="intercepted") | [.target, .sni, .attempts[1].leaf.issuer] | @tsv' out.jsonl

Exit codes: 0 done, 1 runtime failure or interrupted (resume with --resume), 2 bad usage.)");
  add_target_options(app, f->targets);
  app.add_option("--sni", f->snis, "Test SNIs, comma-separated (default: facebook.com,google.com)")
      ->delimiter(',')->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--sni-file", f->sni_file, "Test SNIs from FILE, one a line");
  app.add_option("--control", f->control,
                 "Control SNI; 'none' sends no SNI (default: a random name under example.com)");
  app.add_option("--retries", f->retries, "Retries of a test that differs from its control")->capture_default_str();
  app.add_option("-c,--concurrency", f->concurrency, "Handshakes in flight at once")->capture_default_str();
  app.add_option("--per-target-rate", f->per_target_rate,
                 "At most this many new handshakes per second to one address (0: no cap)")
      ->capture_default_str();
  app.add_option("--rate", f->rate, "At most this many new handshakes per second (0: no cap)")
      ->capture_default_str();
  app.add_option("--connect-timeout", f->connect_timeout, "Seconds for the TCP connect")->capture_default_str();
  app.add_option("--handshake-timeout", f->handshake_timeout, "Seconds for the TLS handshake")
      ->capture_default_str();
  app.add_option("--source-ip", f->source_ip, "Send from this local address");
  app.add_option("--ca-file", f->ca_file, "Root store: PEM bundle (default: the system's Mozilla bundle)");
  app.add_option("--ca-dir", f->ca_dir, "Root store: a directory of PEM files");
  app.add_option("--interceptors", f->interceptors, "Registry of known interception roots (default: built in)");
  app.add_flag("--select-trusted", f->select_trusted,
               "Only a control handshake per target; write the targets whose chain is trusted");
  app.add_option("--hello", f->hello,
                 "openssl: OpenSSL completes each handshake; cert-grab: a raw TLS 1.2 ClientHello, the chain read in "
                 "clear, no key exchange (TLS 1.3-only servers answer with an error)")
      ->capture_default_str();
  app.add_option("--template", f->hello_template,
                 "ClientHello shape for --hello cert-grab: minimal12, chrome, firefox, fb2019, openssl")
      ->capture_default_str();
  add_identity_options(app, f->identity);
  add_output_options(app, *f, "scan", "No progress bar or notes; the summary still goes to stderr");
  return [f] { return run_scan(*f); };
}

}  // namespace mw::app
