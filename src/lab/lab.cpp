#include "lab/lab.hpp"

#include "net/privileges.hpp"

#include "lab/link_delay.hpp"

#include "certs/issue.hpp"
#include "certs/x509.hpp"
#include "lab/device.hpp"
#include "lab/netns.hpp"
#include "lab/schedule.hpp"
#include "lab/tls_server.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace mw::lab {
namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

certs::NameParts ca_name(const std::string& country, const std::string& cn) { return {{"C", country}, {"CN", cn}}; }

// The lab's certificate authorities, written once by `lab up`: a public
// hierarchy the vantages trust, and the interception hierarchy of the recipe.
void make_authorities(const LabConfig& c, const fs::path& dir) {
  auto pub_root = certs::make_root({{"C", "ZZ"}, {"O", "mitmwatch lab"}, {"CN", "Lab Public Root"}});
  auto pub_ca = certs::make_intermediate(pub_root, {{"C", "ZZ"}, {"O", "mitmwatch lab"}, {"CN", "Lab Public CA"}});
  // Root: RSA-4096, 30 years; intermediate: RSA-2048 e=65537, 3 years (the report's figures).
  certs::CertSpec root_spec;
  root_spec.subject = ca_name(c.forgery.country, c.forgery.root_name);
  root_spec.is_ca = true;
  root_spec.not_before_offset = std::chrono::seconds(-86400);
  root_spec.not_after_offset = std::chrono::seconds(30LL * 365 * 86400);
  auto root_key = certs::make_rsa_key(4096);
  certs::Authority kz_root{certs::issue(root_spec, root_key.get(), nullptr), std::move(root_key)};
  auto kz_ca = certs::make_intermediate(kz_root, ca_name(c.forgery.country, c.forgery.intermediate_name),
                                        certs::make_rsa_key(2048));
  for (auto& [stem, a] : std::vector<std::pair<std::string, const certs::Authority*>>{
           {"public-root", &pub_root}, {"public-ca", &pub_ca}, {"kz-root", &kz_root}, {"kz-ca", &kz_ca}}) {
    write_text(dir / (stem + ".pem"), certs::to_pem(a->cert.get()));
    write_text(dir / (stem + ".key"), certs::key_to_pem(a->key.get()));
    fs::permissions(dir / (stem + ".key"), fs::perms::owner_read | fs::perms::owner_write);
  }
}

tl::expected<certs::Authority, std::string> load_authority(const fs::path& dir, const std::string& stem) {
  auto cert = certs::read_pem_file((dir / (stem + ".pem")).string());
  if (!cert) return tl::unexpected(cert.error());
  auto key = certs::read_key_pem_file((dir / (stem + ".key")).string());
  if (!key) return tl::unexpected(key.error());
  return certs::Authority{std::move(cert->front()), std::move(*key)};
}

std::vector<Argv> build_commands(const LabPlan& p) {
  std::vector<Argv> cmds;
  for (const auto& ns : p.all_namespaces()) {
    cmds.push_back({"ip", "-n", ns, "link", "set", "lo", "up"});
    // TCP timestamps off: the device's take-over carries sequence numbers and
    // windows over, not timestamp state. Any port unprivileged: the lab's
    // servers bind 443 after they have given up root.
    for (const char* key : {"net.ipv4.ip_forward=1", "net.ipv4.tcp_timestamps=0", "net.ipv4.ip_unprivileged_port_start=0", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                            "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0"})
      cmds.push_back({"ip", "netns", "exec", ns, "sysctl", "-qw", key});
  }
  for (size_t i = 0; i < p.routers.size(); ++i) {
    const std::string& ns = p.routers[i];
    int router = static_cast<int>(i) + 1;
    cmds.push_back({"ip", "netns", "exec", ns, "sysctl", "-qw",
                    "net.ipv4.icmp_ratelimit=" + std::to_string(p.config.icmp_ratelimit_ms)});
    const auto& silent = p.config.silent_routers;
    if (std::find(silent.begin(), silent.end(), router) != silent.end())
      cmds.push_back({"ip", "netns", "exec", ns, "iptables-legacy", "-w", "-A", "OUTPUT", "-p", "icmp", "--icmp-type",
                      "time-exceeded", "-j", "DROP"});
    if (p.config.link_delay_ms > 0)
      cmds.push_back({"ip", "netns", "exec", ns, "iptables-legacy", "-w", "-t", "mangle", "-A", "POSTROUTING", "-j", "NFQUEUE",
                      "--queue-num", std::to_string(kDelayQueue), "--queue-bypass"});
  }
  for (const auto& l : p.links) {
    cmds.push_back({"ip", "link", "add", l.a.name, "netns", l.a.ns, "type", "veth", "peer", "name", l.b.name, "netns", l.b.ns});
    for (const auto* i : {&l.a, &l.b}) {
      cmds.push_back({"ip", "-n", i->ns, "addr", "add", i->address, "dev", i->name});
      cmds.push_back({"ip", "-n", i->ns, "link", "set", i->name, "up"});
    }
  }
  for (const auto& r : p.routes) {
    if (r.destination.rfind("local ", 0) == 0)
      cmds.push_back({"ip", "-n", r.ns, "route", "add", "local", r.destination.substr(6), "dev", "lo"});
    else
      cmds.push_back({"ip", "-n", r.ns, "route", "add", r.destination, "via", r.via});
  }
  if (!p.device.empty()) {
    auto ipt = [&](std::vector<std::string> rule) {
      Argv cmd{"ip", "netns", "exec", p.device, "iptables-legacy", "-w"};
      cmd.insert(cmd.end(), rule.begin(), rule.end());
      cmds.push_back(cmd);
    };
    // Port-443 packets go to the device process from the raw table, where the
    // arriving TTL is still the real one. Its own probes are not queued.
    ipt({"-t", "raw", "-A", "PREROUTING", "-d", "10.59.1.2", "-j", "ACCEPT"});
    ipt({"-t", "raw", "-A", "PREROUTING", "-d", "10.59.2.1", "-j", "ACCEPT"});
    ipt({"-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "443", "-j", "NFQUEUE", "--queue-num", "0",
         "--queue-bypass"});
    ipt({"-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--sport", "443", "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j",
         "NFQUEUE", "--queue-num", "0", "--queue-bypass"});
    // Packets of a flow the device took over go to its transparent socket.
    ipt({"-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-m", "socket", "--transparent", "-j", "MARK", "--set-mark", "1"});
    // Forwarding decrements the TTL; adding one back on arrival makes the
    // device no hop at all: it never sends time-exceeded, as in the report.
    ipt({"-t", "mangle", "-A", "PREROUTING", "-j", "TTL", "--ttl-inc", "1"});
    cmds.push_back({"ip", "-n", p.device, "rule", "add", "fwmark", "1", "lookup", "100"});
    cmds.push_back({"ip", "-n", p.device, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"});
  }
  return cmds;
}

}  // namespace

std::string state_dir(const std::string& lab_name) { return "/run/mitmwatch-lab/" + lab_name; }
std::string run_dir(const std::string& lab_name) { return state_dir(lab_name) + "/run"; }

net::IpAddress server_address(const PrefixConfig& prefix, int i) { return prefix.cidr.at(static_cast<uint64_t>(i) + 1); }

bool server_untrusted(const PrefixConfig& prefix, int i) { return i >= prefix.servers - prefix.untrusted; }

void lab_down(const std::string& lab_name) {
  std::string prefix = "mw" + lab_name + "-";
  for (const auto& ns : list_namespaces())
    if (ns.rfind(prefix, 0) == 0) delete_namespace(ns);
  std::error_code ec;
  fs::remove_all(state_dir(lab_name), ec);
}

tl::expected<void, std::string> lab_up(const LabConfig& config, const UpOptions& options) {
  auto log = [&](const std::string& s) {
    if (options.log) options.log(s);
  };
  lab_down(config.name);  // a stale lab of the same name goes first
  LabPlan plan = plan_lab(config);
  fs::path dir = state_dir(config.name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return tl::unexpected(dir.string() + ": " + ec.message());
  auto fail = [&](const std::string& why) -> tl::expected<void, std::string> {
    lab_down(config.name);
    return tl::unexpected(why);
  };
  write_text(dir / "config.toml", config.source_toml);
  // Where the lab's processes write once they have given up root.
  fs::path run_path = run_dir(config.name);
  fs::create_directories(run_path, ec);
  if (struct passwd* pw = getpwnam(net::default_unprivileged_user().c_str()))
    if (::chown(run_path.c_str(), pw->pw_uid, pw->pw_gid) != 0) return fail(run_path.string() + ": chown failed");
  log("certificate authorities (public, and the interception root " + config.forgery.root_name + ")");
  make_authorities(config, dir);
  log(fmt::format("{} namespaces, {} links", plan.all_namespaces().size(), plan.links.size()));
  for (const auto& ns : plan.all_namespaces())
    if (auto ok = run({"ip", "netns", "add", ns}); !ok) return fail(ok.error());
  for (const auto& cmd : build_commands(plan))
    if (auto ok = run(cmd); !ok) return fail(ok.error());
  int servers = 0;
  for (const auto& s : plan.servers) {
    auto pid = spawn_in(s.ns, {options.self_exe, "lab", "serve", "--name", config.name, "--prefix", s.prefix.name},
                        (dir / ("serve-" + s.prefix.name + ".log")).string());
    if (!pid) return fail(pid.error());
    servers += s.prefix.servers;
  }
  for (const auto& s : plan.servers) {
    auto ready = run_path / ("serve-" + s.prefix.name + ".ready");
    for (int i = 0; i < 300 && !fs::exists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!fs::exists(ready))
      return fail("server process of prefix '" + s.prefix.name + "' did not start: " +
                  read_text(dir / ("serve-" + s.prefix.name + ".log")));
  }
  log(fmt::format("{} TLS servers in {} prefixes", servers, plan.servers.size()));
  if (config.link_delay_ms > 0) {
    for (size_t i = 0; i < plan.routers.size(); ++i) {
      std::string r = "r" + std::to_string(i + 1);
      auto pid = spawn_in(plan.routers[i], {options.self_exe, "lab", "delay-run", "--name", config.name, "--router", r},
                          (dir / ("delay-" + r + ".log")).string());
      if (!pid) return fail(pid.error());
    }
    for (size_t i = 0; i < plan.routers.size(); ++i) {
      auto ready = run_path / ("delay-r" + std::to_string(i + 1) + ".ready");
      for (int n = 0; n < 300 && !fs::exists(ready); ++n) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (!fs::exists(ready)) return fail("link delay of router r" + std::to_string(i + 1) + " did not start");
    }
    log(fmt::format("link delay {} ms at each of {} routers", config.link_delay_ms, plan.routers.size()));
  }
  if (!plan.device.empty()) {
    if (!config.device.enabled) set_device_enabled(config.name, false);
    if (!config.device.schedule.empty()) {
      auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch()).count();
      auto s = parse_schedule(config.device.schedule, now);
      if (!s) return fail(s.error());
      if (auto ok = write_device_schedule(config.name, *s); !ok) return fail(ok.error());
    }
    auto pid = spawn_in(plan.device, {options.self_exe, "lab", "device-run", "--name", config.name},
                        (dir / "device.log").string());
    if (!pid) return fail(pid.error());
    auto ready = run_path / "device.ready";
    for (int i = 0; i < 300 && !fs::exists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!fs::exists(ready)) return fail("the interception device did not start: " + read_text(dir / "device.log"));
    log(fmt::format("interception device between r{} and r{} ({} triggers, {})", config.device_after,
                    config.device_after + 1, config.device.triggers.size(), config.device.enabled ? "on" : "off"));
  }
  return {};
}

tl::expected<LabPlan, std::string> running_plan(const std::string& lab_name) {
  fs::path cfg = fs::path(state_dir(lab_name)) / "config.toml";
  if (!fs::exists(cfg)) return tl::unexpected("no lab '" + lab_name + "' is up (run `mitmwatch lab up`)");
  auto config = load_lab_config(cfg.string());
  if (!config) return tl::unexpected(config.error());
  return plan_lab(*config);
}

tl::expected<nlohmann::ordered_json, std::string> lab_status(const std::string& lab_name) {
  auto plan = running_plan(lab_name);
  if (!plan) return tl::unexpected(plan.error());
  auto present = list_namespaces();
  auto exists = [&](const std::string& ns) { return std::find(present.begin(), present.end(), ns) != present.end(); };
  nlohmann::ordered_json j;
  j["name"] = lab_name;
  j["state_dir"] = state_dir(lab_name);
  j["trust_store"] = state_dir(lab_name) + "/public-root.pem";
  j["routers"] = plan->routers;
  j["device"] = plan->device.empty() ? nlohmann::ordered_json(nullptr)
                                     : nlohmann::ordered_json{{"namespace", plan->device},
                                                              {"triggers", plan->config.device.triggers},
                                                              {"match", to_string(plan->config.device.match)},
                                                              {"case_sensitive", plan->config.device.case_sensitive},
                                                              {"sni_entry", plan->config.device.last_sni_entry ? "last" : "first"},
                                                              {"reassemble_segments", plan->config.device.reassemble_segments},
                                                              {"reassemble_records", plan->config.device.reassemble_records},
                                                              {"fraction", plan->config.device.fraction},
                                                              {"between_routers", {plan->config.device_after,
                                                                                   plan->config.device_after + 1}}};
  nlohmann::ordered_json vantages = nlohmann::ordered_json::array();
  for (const auto& v : plan->config.vantages)
    vantages.push_back({{"name", v.name}, {"namespace", plan->vantages.at(v.name)}, {"address", plan->vantage_address(v.name)},
                        {"attach", v.attach}});
  j["vantages"] = vantages;
  nlohmann::ordered_json prefixes = nlohmann::ordered_json::array();
  size_t missing = 0;
  for (const auto& s : plan->servers) {
    nlohmann::ordered_json behind = nlohmann::ordered_json::object();
    for (const auto& v : plan->config.vantages) behind[v.name] = plan->crosses_device(v.name, s.prefix);
    nlohmann::ordered_json addresses = nlohmann::ordered_json::array();
    for (int i = 0; i < s.prefix.servers; ++i) {
      addresses.push_back({{"address", server_address(s.prefix, i).to_string()}, {"trusted", !server_untrusted(s.prefix, i)}});
      if (!s.prefix.hostile.empty())
        addresses.back()["hostile"] = s.prefix.hostile[static_cast<size_t>(i) % s.prefix.hostile.size()];
    }
    prefixes.push_back({{"name", s.prefix.name}, {"cidr", s.prefix.cidr.to_string()}, {"namespace", s.ns},
                        {"attach", s.prefix.attach}, {"behind_device_from", behind}, {"servers", addresses}});
  }
  for (const auto& ns : plan->all_namespaces()) missing += exists(ns) ? 0 : 1;
  j["prefixes"] = prefixes;
  auto counters =
      nlohmann::ordered_json::parse(read_text(fs::path(run_dir(lab_name)) / "device.json"), nullptr, false);
  if (!plan->device.empty() && !counters.is_discarded()) j["device"]["state"] = counters;
  j["namespaces_missing"] = missing;
  return j;
}

int serve_prefix(const std::string& lab_name, const std::string& prefix_name) {
  auto plan = running_plan(lab_name);
  if (!plan) {
    fmt::print(stderr, "lab serve: {}\n", plan.error());
    return 1;
  }
  const PrefixConfig* prefix = nullptr;
  for (const auto& s : plan->servers)
    if (s.prefix.name == prefix_name) prefix = &s.prefix;
  if (!prefix) {
    fmt::print(stderr, "lab serve: no prefix '{}'\n", prefix_name);
    return 1;
  }
  fs::path dir = state_dir(lab_name);
  auto ca = load_authority(dir, "public-ca");
  if (!ca) {
    fmt::print(stderr, "lab serve: {}\n", ca.error());
    return 1;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // the server's threads inherit the mask

  // A listener on each server's address (not the wildcard: another server
  // run by someone else, as fpserver in the tests, may take a free address of
  // the prefix). EC P-256 leaves are cheap to make at start.
  std::vector<Listener> listeners;
  for (int i = 0; i < prefix->servers; ++i) {
    auto addr = server_address(*prefix, i);
    std::string name = fmt::format("s{}.{}.lab.example", i + 1, prefix->name);
    auto site = std::make_shared<Site>();
    auto chain = server_untrusted(*prefix, i) ? certs::make_self_signed(name) : certs::make_leaf(*ca, {name}, {&*ca});
    std::string hostile = prefix->hostile.empty() ? "" : prefix->hostile[static_cast<size_t>(i) % prefix->hostile.size()];
    if (hostile == "huge-chain") {
      // 1 MiB of chain: the CA's certificate over and over after the leaf.
      X509* base = chain.intermediates.empty() ? chain.leaf.get() : chain.intermediates.front().get();
      size_t one = certs::to_der(base).size();
      for (size_t bytes = 0; bytes < (1u << 20); bytes += one) {
        X509_up_ref(base);
        chain.intermediates.emplace_back(base);
      }
    } else if (!hostile.empty()) {
      site->misbehaviour = *misbehaviour_named(hostile);
    }
    site->chain = std::make_shared<certs::ServedChain>(std::move(chain));
    listeners.push_back({{addr, 443}, std::move(site)});
  }
  // Every ClientHello the servers see, for tests and for people: the device's
  // upstream ClientHello is not the client's.
  auto hello_log = std::make_shared<std::ofstream>(dir / ("hellos-" + prefix_name + ".jsonl"), std::ios::app);
  auto hello_mu = std::make_shared<std::mutex>();
  // Certificates made, the log open, port 443 unprivileged in this namespace:
  // the servers run as an unprivileged user with no capability (before their
  // threads start: capabilities are per thread).
  auto dropped = net::drop_to_user(net::default_unprivileged_user());
  if (!dropped) {
    fmt::print(stderr, "lab serve: giving up root: {}\n", dropped.error());
    return 1;
  }
  TlsServer::Options options;
  options.workers = 2;
  options.on_hello = [hello_log, hello_mu](const HelloSeen& h) {
                               nlohmann::ordered_json j = {{"peer", h.peer.to_string()}, {"server", h.local.to_string()},
                                                           {"sni", h.sni}, {"shape", h.shape}};
                               std::lock_guard lock(*hello_mu);
                               *hello_log << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n" << std::flush;
                             };
  auto server = TlsServer::start(std::move(listeners), options);
  if (!server) {
    fmt::print(stderr, "lab serve: {}\n", server.error());
    return 1;
  }
  write_text(fs::path(run_dir(lab_name)) / ("serve-" + prefix_name + ".ready"), std::to_string(getpid()) + "\n");
  fmt::print(stderr, "lab serve: {} servers of prefix {} on port 443, as {}\n", prefix->servers, prefix_name,
             dropped->describe());
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}

}  // namespace mw::lab
