// `mitmwatch scan`: flags and wiring only; the scan loop is src/drivers/scan.cpp.
#include "certs/registry.hpp"
#include "cli/progress.hpp"
#include "cli/scan_summary.hpp"
#include "commands.hpp"
#include "drivers/scan.hpp"
#include "io/jsonl.hpp"
#include "net/targets.hpp"
#include "records/scan_record.hpp"

#include <fmt/format.h>

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

struct ScanFlags {
  std::vector<std::string> targets;
  std::string input;
  uint16_t port = 443;
  std::string blocklist;
  bool allow_private = false;
  std::string shard = "0/1";
  std::vector<std::string> snis;
  std::string sni_file;
  std::string control;
  int retries = 4;
  size_t concurrency = 1000;
  double rate = 0;
  double connect_timeout = 5;
  double handshake_timeout = 10;
  std::string source_ip;
  std::string ca_file;
  std::string ca_dir;
  std::string interceptors;
  bool select_trusted = false;
  std::string output = "-";
  bool resume = false;
  bool overwrite = false;
  bool quiet = false;
};

// A label no deny-list holds, under a reserved name (RFC 2606), fresh per scan.
std::string random_control_name() {
  std::random_device rd;
  std::mt19937 gen(rd());
  std::uniform_int_distribution<int> letter(0, 25);
  std::string label;
  for (int i = 0; i < 12; ++i) label.push_back(static_cast<char>('a' + letter(gen)));
  return label + ".example.com";
}

std::vector<std::string> read_lines(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) throw UsageError(fmt::format("{} {}: cannot open file", what, path));
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

void check_domain(const std::string& name, const std::string& where) {
  bool ok = !name.empty() && name.size() <= 253;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) ok = false;
  if (!ok) throw UsageError(fmt::format("{} '{}' is not a domain name", where, name));
}

int run_scan(const ScanFlags& f) {
  // 1. Validate everything before anything is written.
  std::vector<net::TargetSpec> specs;
  for (const auto& t : f.targets) {
    auto spec = net::parse_target(t, f.port);
    if (!spec) throw UsageError("target " + spec.error());
    specs.push_back(*spec);
  }
  if (!f.input.empty() || f.targets.empty()) {
    std::string source = f.input.empty() ? "-" : f.input;
    if (source == "-" && f.input.empty() && isatty(STDIN_FILENO))
      throw UsageError("no targets: give them as arguments, with -i FILE, or on stdin");
    std::ifstream file;
    std::istream* in = &std::cin;
    if (source != "-") {
      file.open(source);
      if (!file) throw UsageError("input " + source + ": cannot open file");
      in = &file;
    }
    auto more = net::read_targets(*in, source == "-" ? "stdin" : source, f.port);
    if (!more) throw UsageError(more.error());
    specs.insert(specs.end(), more->begin(), more->end());
  }
  if (specs.empty()) throw UsageError("no targets in the input");
  if (auto ok = net::check_reserved(specs, f.allow_private); !ok) throw UsageError(ok.error());

  net::TargetFilter filter;
  filter.allow_reserved = f.allow_private;
  auto shard = net::Shard::parse(f.shard);
  if (!shard) throw UsageError(shard.error());
  filter.shard = *shard;
  if (!f.blocklist.empty()) {
    std::ifstream in(f.blocklist);
    if (!in) throw UsageError("blocklist " + f.blocklist + ": cannot open file");
    auto bl = net::read_blocklist(in, f.blocklist);
    if (!bl) throw UsageError("blocklist " + bl.error());
    filter.blocklist = std::move(*bl);
  }

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
  }
  if (f.control.empty()) options.control_sni = random_control_name();
  else if (f.control != "none") {
    check_domain(f.control, "--control");
    options.control_sni = f.control;
  }
  if (f.retries < 0 || f.retries > 100) throw UsageError("--retries must be 0..100");
  if (f.concurrency < 1 || f.concurrency > 200000) throw UsageError("--concurrency must be 1..200000");
  if (f.rate < 0) throw UsageError("--rate must be >= 0");
  if (f.connect_timeout <= 0 || f.handshake_timeout <= 0) throw UsageError("timeouts must be > 0 seconds");
  options.retries = f.retries;
  options.concurrency = f.concurrency;
  options.rate = f.rate;
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
  auto profile = tls::ClientProfile::browser_like();
  if (!profile) throw std::runtime_error(profile.error());

  if (f.resume && f.output == "-") throw UsageError("--resume needs -o FILE");
  if (f.resume && f.select_trusted) throw UsageError("--resume does not apply to --select-trusted");
  if (f.output != "-" && !f.resume && !f.overwrite) {
    struct stat st;
    if (::stat(f.output.c_str(), &st) == 0 && st.st_size > 0)
      throw UsageError("output " + f.output + " already holds results; use --resume to finish it or --overwrite");
  }

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
  auto out = io::JsonlWriter::open(f.output, f.resume);
  if (!out) throw std::runtime_error(out.error());

  net::TargetStream stream(std::move(specs), filter);
  auto total_targets = stream.count();
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
        if (auto ok = out->write_line(record.target.to_string()); !ok) write_error = ok.error();
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

  auto t0 = std::chrono::steady_clock::now();
  drivers::Scanner scanner(options, *profile, *trust, *registry);
  auto stats = scanner.run(stream, hooks);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bar.finish();
  (void)out->sync();
  if (!write_error.empty()) throw std::runtime_error(write_error);

  if (stream.skipped_reserved() && !f.quiet)
    fmt::print(stderr, "skipped {} reserved or private addresses (--allow-private scans them)\n",
               stream.skipped_reserved());
  if (stream.skipped_blocklisted() && !f.quiet)
    fmt::print(stderr, "skipped {} blocklisted addresses\n", stream.skipped_blocklisted());
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
  app.add_option("targets", f->targets, "Targets: IP, IP:PORT, [IPv6]:PORT, CIDR, CIDR:PORT, host:port")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("-i,--input", f->input, "Read targets from FILE, one a line ('-': stdin)");
  app.add_option("-p,--port", f->port, "Port for targets that name none")->capture_default_str();
  app.add_option("--blocklist", f->blocklist, "Skip the prefixes listed in FILE (zmap's format)");
  app.add_flag("--allow-private", f->allow_private, "Scan reserved and private ranges (127.0.0.0/8, 10/8, ...)");
  app.add_option("--shard", f->shard, "Scan shard I of N (0-based, I/N); N machines cover each target once")
      ->capture_default_str();
  app.add_option("--sni", f->snis, "Test SNIs, comma-separated (default: facebook.com,google.com)")
      ->delimiter(',')->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--sni-file", f->sni_file, "Test SNIs from FILE, one a line");
  app.add_option("--control", f->control,
                 "Control SNI; 'none' sends no SNI (default: a random name under example.com)");
  app.add_option("--retries", f->retries, "Retries of a test that differs from its control")->capture_default_str();
  app.add_option("-c,--concurrency", f->concurrency, "Handshakes in flight at once")->capture_default_str();
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
  app.add_option("-o,--output", f->output, "Write records to FILE (default: stdout)");
  app.add_flag("--resume", f->resume, "Keep the records in -o FILE and scan only what it lacks");
  app.add_flag("--overwrite", f->overwrite, "Replace a non-empty -o FILE");
  app.add_flag("-q,--quiet", f->quiet, "No progress bar or notes; the summary still goes to stderr");
  return [f] { return run_scan(*f); };
}

}  // namespace mw::app
