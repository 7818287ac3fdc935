#include "target_input.hpp"

#include "commands.hpp"
#include "tls/client.hpp"

#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

namespace mw::app {

// A label no deny-list holds, under a reserved name (RFC 2606), fresh per scan.
void add_identity_options(CLI::App& app, IdentityFlags& f) {
  app.add_option("--contact", f.contact,
                 "How a site's operators reach you (an e-mail or URL): after each completed handshake the probe "
                 "sends one HEAD / with User-Agent \"mitmwatch/VERSION (+CONTACT)\" and records the status "
                 "(--hello openssl only; ALPN then offers http/1.1 only)");
  app.add_option("--user-agent", f.user_agent, "The whole User-Agent of that request, instead of --contact's");
}

std::string probe_user_agent(const IdentityFlags& f) {
  std::string ua = !f.user_agent.empty() ? f.user_agent : f.contact.empty() ? "" : tls::contact_user_agent(f.contact);
  for (char c : ua)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      throw UsageError(fmt::format("--{}: control characters cannot go in an HTTP header",
                                   f.user_agent.empty() ? "contact" : "user-agent"));
  return ua;
}

net::Endpoint listen_endpoint(const std::string& listen) {
  auto colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  auto address = net::IpAddress::parse(host);
  int port = -1;
  if (colon != std::string::npos && colon + 1 < listen.size() && listen.size() - colon <= 6 &&
      listen.find_first_not_of("0123456789", colon + 1) == std::string::npos)
    port = std::stoi(listen.substr(colon + 1));
  if (!address || port < 0 || port > 65535) throw UsageError("--listen " + listen + ": not ADDRESS:PORT");
  return {*address, static_cast<uint16_t>(port)};
}

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

void add_output_options(CLI::App& app, OutputFlags& f, const std::string& verb, const std::string& quiet_help) {
  app.add_option("-o,--output", f.output, "Write records to FILE (default: stdout)");
  app.add_flag("--resume", f.resume, "Keep the records in -o FILE and " + verb + " only what it lacks");
  app.add_flag("--overwrite", f.overwrite, "Replace a non-empty -o FILE");
  app.add_flag("-q,--quiet", f.quiet, quiet_help);
  add_store_options(app, f);
}

void add_store_options(CLI::App& app, OutputFlags& f) {
  add_db_option(app, f.db, "Also keep the records in the store: one run, committed as they come");
  app.add_option("--vantage", f.vantage, "Name of where this runs from, for the store (default: the host name)");
  app.add_option("--series", f.series, "")->group("");  // set by monitor: the run is one of its rounds
}

void add_db_option(CLI::App& app, std::string& db, const std::string& what) {
  app.add_option_function<std::string>(
         "--db", [&db](const std::string& v) { db = v.empty() ? store::default_db_path() : v; },
         what + " (--db alone: " + store::default_db_path() + "; $MITMWATCH_DB overrides; a postgresql:// URL for a shared store)")
      ->expected(0, 1)
      ->type_name("[=PATH|URL]");
}

void add_store_flag(CLI::App& app, std::string& db) {
  app.add_option("--db", db, "The store: a SQLite file, or a postgresql:// URL (libpq's syntax); $MITMWATCH_DB sets the default")
      ->capture_default_str()
      ->type_name("PATH|URL");
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find this program's path (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (auto& c : all)
    if (c == '\0') c = ' ';
  while (!all.empty() && all.back() == ' ') all.pop_back();
  return all;
}

store::SinkOptions sink_options(const OutputFlags& f, const std::string& command) {
  store::SinkOptions o;
  o.output = f.output;
  o.append = f.resume;
  o.db = f.db;
  o.run.command = command;
  o.run.vantage = f.vantage.empty() ? store::host_name() : f.vantage;
  o.run.args = command_line();
  o.run.series = f.series;
  return o;
}

void check_output(const OutputFlags& f) {
  if (f.resume && f.output == "-") throw UsageError("--resume needs -o FILE");
  if (f.output == "-" || f.resume || f.overwrite) return;
  struct stat st;
  if (::stat(f.output.c_str(), &st) == 0 && st.st_size > 0)
    throw UsageError("output " + f.output + " already holds results; use --resume to finish it or --overwrite");
}

void add_target_options(CLI::App& app, TargetFlags& f) {
  app.add_option("targets", f.targets, "Targets: IP, IP:PORT, [IPv6]:PORT, CIDR, CIDR:PORT, host:port")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("-i,--input", f.input, "Read targets from FILE, one a line ('-': stdin)");
  app.add_option("-p,--port", f.port, "Port for targets that name none")->capture_default_str();
  app.add_option("--blocklist", f.blocklist, "Also skip the prefixes listed in FILE (zmap's format)");
  app.add_flag("--allow-private", f.allow_private,
               "Lift the default blocklist: reserved and private ranges (127.0.0.0/8, 10/8, ...) allowed");
  app.add_option("--default-blocklist", f.default_blocklist,
                 "Replace the shipped default blocklist (data/blocklist.conf: IANA special-purpose ranges) with FILE");
  app.add_option("--opt-out", f.opt_out,
                 "Opt-out list FILE: prefixes never measured, names never sent (also read: " + net::default_opt_out_path() + ")");
  app.add_option("--shard", f.shard, "Shard I of N (0-based, I/N); N machines cover each target once")
      ->capture_default_str();
}

namespace {
std::vector<net::Prefix> read_prefix_file(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) throw UsageError(std::string(flag) + " " + path + ": cannot open file");
  auto list = net::read_blocklist(in, path);
  if (!list) throw UsageError(std::string(flag) + " " + list.error());
  return std::move(*list);
}
}  // namespace

net::OptOut opt_out_of(const TargetFlags& f) {
  net::OptOut all;
  std::vector<std::pair<std::string, std::string>> files;  // path, flag
  if (std::ifstream probe(net::default_opt_out_path()); probe) files.emplace_back(net::default_opt_out_path(), "opt-out list");
  for (const auto& p : f.opt_out) files.emplace_back(p, "--opt-out");
  for (const auto& [path, flag] : files) {
    std::ifstream in(path);
    if (!in) throw UsageError(flag + " " + path + ": cannot open file");
    auto o = net::read_opt_out(in, path);
    if (!o) throw UsageError(flag + " " + o.error());
    all.add(*o);
  }
  return all;
}

std::vector<std::string> without_opted_out(const std::vector<std::string>& names, const net::OptOut& o,
                                           const std::string& what, bool quiet) {
  std::vector<std::string> kept;
  for (const auto& n : names)
    if (!o.covers_name(n)) kept.push_back(n);
  if (kept.size() < names.size() && !quiet)
    fmt::print(stderr, "{} {} left out: on the opt-out list\n", names.size() - kept.size(), what);
  return kept;
}

net::TargetFilter target_filter(const TargetFlags& f) {
  net::TargetFilter filter;
  filter.allow_reserved = f.allow_private;
  if (!f.default_blocklist.empty()) filter.default_blocklist = read_prefix_file(f.default_blocklist, "--default-blocklist");
  if (!f.blocklist.empty()) filter.blocklist = read_prefix_file(f.blocklist, "--blocklist");
  filter.opted_out = opt_out_of(f).prefixes;
  auto shard = net::Shard::parse(f.shard);
  if (!shard) throw UsageError(shard.error());
  filter.shard = *shard;
  return filter;
}

std::unique_ptr<net::TargetStream> open_targets(const TargetFlags& f, bool require) {
  std::vector<net::TargetSpec> specs;
  for (const auto& t : f.targets) {
    auto spec = net::parse_target(t, f.port);
    if (!spec) throw UsageError("target " + spec.error());
    specs.push_back(*spec);
  }
  if (!f.input.empty() || (f.targets.empty() && require)) {
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
  if (specs.empty() && require) throw UsageError("no targets in the input");
  auto filter = target_filter(f);
  if (auto ok = net::check_reserved(specs, filter); !ok) throw UsageError(ok.error());
  return std::make_unique<net::TargetStream>(std::move(specs), filter);
}

}  // namespace mw::app
