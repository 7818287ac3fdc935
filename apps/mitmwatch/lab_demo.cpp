// `mitmwatch lab demo`: the study end to end in the default lab. Each step is
// a real `mitmwatch scan` run inside a vantage namespace, as a researcher would.
#include "certs/x509.hpp"
#include "cli/progress.hpp"
#include "commands.hpp"
#include "lab/lab.hpp"
#include "lab/netns.hpp"
#include "trace/trace_result.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unistd.h>

namespace mw::app {
namespace {

struct VantageResult {
  size_t servers = 0, trusted = 0, intercepted = 0;
  std::map<std::string, size_t> issuers;  // forged leaf issuer <- its issuer
  trace::TraceSummary trace;              // where the device sits, seen from this vantage
  double seconds = 0, trace_seconds = 0;
};

std::vector<nlohmann::json> read_records(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line, nullptr, false));
  return out;
}

std::string issuer_path(const nlohmann::json& attempt) {
  std::string path = attempt["leaf"]["issuer"].get<std::string>();
  if (attempt["chain"].size() > 1) {
    auto der = certs::unbase64(attempt["chain"][1].get<std::string>());
    if (der)
      if (auto ca = certs::from_der(*der)) path += "  <-  " + certs::issuer_text(ca->get());
  }
  return path;
}

}  // namespace

int run_lab_demo(const std::string& self, bool keep) {
  if (geteuid() != 0) throw std::runtime_error("the lab demo needs root (network namespaces); `mitmwatch demo` runs without");
  auto config = lab::default_lab_config();
  auto t0 = std::chrono::steady_clock::now();
  lab::UpOptions options{self, [](const std::string& s) { fmt::print(stderr, "lab up: {}\n", s); }};
  if (auto ok = lab::lab_up(config, options); !ok) throw std::runtime_error(ok.error());
  // Down again however the demo ends (a failed step throws), unless --keep.
  struct TakeDown {
    const std::string& name;
    bool keep;
    ~TakeDown() {
      if (!keep) lab::lab_down(name);
    }
  } take_down{config.name, keep};
  double up_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto status = lab::lab_status(config.name);
  if (!status) throw std::runtime_error(status.error());
  std::string dir = lab::state_dir(config.name);
  std::string targets = dir + "/demo-targets.txt";
  {
    std::ofstream out(targets);
    for (const auto& p : (*status)["prefixes"])
      for (const auto& s : p["servers"]) out << s["address"].get<std::string>() << "\n";
  }
  auto plan = lab::running_plan(config.name);
  std::vector<std::pair<std::string, VantageResult>> results;
  // Records go to the current directory: the state directory goes with the lab.
  std::string out_dir = std::filesystem::current_path().string();
  for (const auto& v : config.vantages) {
    results.emplace_back(v.name, VantageResult{});
    auto& r = results.back().second;
    auto v0 = std::chrono::steady_clock::now();
    std::string ns = plan->vantages.at(v.name), trusted = dir + "/demo-trusted-" + v.name + ".txt",
                records = out_dir + "/mitmwatch-lab-" + v.name + ".jsonl";
    std::vector<std::string> common{self, "scan", "--allow-private", "--quiet", "--ca-file", dir + "/public-root.pem",
                                    "--handshake-timeout", "30"};
    fmt::print(stderr, "{}: selecting servers with a trusted certificate...\n", v.name);
    auto select = common;
    select.insert(select.end(), {"--select-trusted", "-i", targets, "-o", trusted});
    if (auto ok = lab::run_in(ns, select); !ok) throw std::runtime_error(ok.error());
    fmt::print(stderr, "{}: scanning them with SNIs facebook.com and google.com and a control...\n", v.name);
    auto scan = common;
    scan.insert(scan.end(), {"-i", trusted, "--sni", "facebook.com,google.com", "-o", records, "--overwrite"});
    if (auto ok = lab::run_in(ns, scan); !ok) throw std::runtime_error(ok.error());
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - v0).count();
    std::ifstream all(targets), sel(trusted);
    std::string line;
    while (std::getline(all, line)) ++r.servers;
    while (std::getline(sel, line)) ++r.trusted;
    std::set<std::string> hit;
    for (const auto& rec : read_records(records)) {
      if (rec.is_discarded() || rec["verdict"] != "intercepted") continue;
      if (hit.insert(rec["target"].get<std::string>()).second)
        for (const auto& a : rec["attempts"])
          if (a["role"] == "test" && !a["leaf"].is_null()) {
            ++r.issuers[issuer_path(a)];
            break;
          }
    }
    r.intercepted = hit.size();
    if (hit.empty()) continue;
    fmt::print(stderr, "{}: tracing the intercepted ones with TTL-limited ClientHellos...\n", v.name);
    auto t0 = std::chrono::steady_clock::now();
    std::string traced = out_dir + "/mitmwatch-lab-trace-" + v.name + ".jsonl";
    std::vector<std::string> trace{self, "trace", "--allow-private", "--quiet", "--ca-file", dir + "/public-root.pem",
                                   "--from-scan", records, "-o", traced, "--overwrite"};
    if (auto ok = lab::run_in(ns, trace); !ok) throw std::runtime_error(ok.error());
    r.trace_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& rec : read_records(traced)) r.trace.add(rec);
  }
  auto device = lab::lab_status(config.name);
  fmt::print("\nThe Censored Planet study of Kazakhstan's 2019 interception, reproduced in the lab\n");
  fmt::print("({} servers in 3 prefixes; the device sits between hops {} and {} from outside; lab up in {:.1f} s)\n\n",
             results.begin()->second.servers, config.device_after, config.device_after + 1, up_secs);
  fmt::print("{:<9} {:>8} {:>9} {:>12} {:>8}   {}\n", "vantage", "servers", "trusted", "intercepted", "share", "time");
  for (const auto& [name, r] : results)
    fmt::print("{:<9} {:>8} {:>9} {:>12} {:>7.1f} %   {:.1f} s\n", name, r.servers, r.trusted, r.intercepted,
               r.trusted ? 100.0 * r.intercepted / r.trusted : 0.0, r.seconds);
  fmt::print("\nForged chains (leaf issuer  <-  its issuer):\n");
  std::map<std::string, size_t> issuers;
  for (const auto& [name, r] : results)
    for (const auto& [path, n] : r.issuers) issuers[path] += n;
  for (const auto& [path, n] : issuers) fmt::print("  {:>4} servers: {}\n", n, path);
  for (const auto& [name, r] : results) {
    if (r.trace.targets == 0) continue;
    fmt::print("\nWhere the device sits, traced from {} ({:.1f} s):\n", name, r.trace_seconds);
    std::istringstream lines(r.trace.render());
    for (std::string line; std::getline(lines, line);) fmt::print("  {}\n", line);
  }
  fmt::print("\nThe report (July 21, 2019): 459 of 6,736 trusted servers (7.0 %) intercepted from the US,\n"
             "1,598 (24 %) from inside Kazakhstan; forged leaves issued by C=KZ, CN=Security Certificate\n"
             "under C=KZ, CN=Qaznet Trust Network; 99.5 % of 1,212 traced hosts injected before the server.\n");
  if (device && (*device)["device"].contains("state"))
    fmt::print("\nDevice counters: {}\n", (*device)["device"]["state"].dump());
  fmt::print("Records: {}/mitmwatch-lab-<vantage>.jsonl, traces: mitmwatch-lab-trace-<vantage>.jsonl\n", out_dir);
  if (keep) {
    fmt::print("The lab is still up (--keep): `mitmwatch lab status`, `mitmwatch lab down`.\n");
  } else {
    fmt::print("The lab goes down again.\n");
  }
  return cli::kExitOk;
}

}  // namespace mw::app
