// `mitmwatch lab`: flags and wiring; the lab itself is src/lab/.
#include "cli/progress.hpp"
#include "commands.hpp"
#include "target_input.hpp"
#include "lab/schedule.hpp"
#include "lab/device.hpp"
#include "lab/lab.hpp"
#include "lab/link_delay.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace mw::app {
namespace {

struct LabFlags {
  std::string config;
  std::string name = "lab";
  bool json = false;
  std::string vantage;
  std::vector<std::string> command;
  std::string prefix;
  std::vector<std::string> steps;
};

void require_root() {
  if (geteuid() != 0) throw std::runtime_error("the lab needs root: it makes network namespaces");
}


int lab_up_cmd(const LabFlags& f) {
  auto config = f.config.empty() ? tl::expected<lab::LabConfig, std::string>(lab::default_lab_config())
                                 : lab::load_lab_config(f.config);
  if (!config) throw UsageError(config.error());
  require_root();
  auto t0 = std::chrono::steady_clock::now();
  lab::UpOptions options{self_exe(), [](const std::string& s) { fmt::print(stderr, "lab up: {}\n", s); }};
  if (auto ok = lab::lab_up(*config, options); !ok) throw std::runtime_error(ok.error());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(stderr, "lab up: '{}' ready in {:.1f} s; `mitmwatch lab status --name {}` shows it\n", config->name,
             secs, config->name);
  return cli::kExitOk;
}

int lab_status_cmd(const LabFlags& f) {
  auto status = lab::lab_status(f.name);
  if (!status) throw std::runtime_error(status.error());
  if (f.json) {
    fmt::print("{}\n", status->dump(2));
    return cli::kExitOk;
  }
  const auto& s = *status;
  fmt::print("lab '{}'  (state in {}, trust store {})\n", f.name, s["state_dir"].get<std::string>(),
             s["trust_store"].get<std::string>());
  fmt::print("routers: {}\n", fmt::join(s["routers"].get<std::vector<std::string>>(), " - "));
  if (s["device"].is_null()) {
    fmt::print("device: none\n");
  } else {
    fmt::print("device: {} between r{} and r{}\n", s["device"]["namespace"].get<std::string>(),
               s["device"]["between_routers"][0].get<int>(), s["device"]["between_routers"][1].get<int>());
    if (s["device"].contains("state")) fmt::print("device state: {}\n", s["device"]["state"].dump());
  }
  for (const auto& v : s["vantages"])
    fmt::print("vantage {:<8} {} at r{}  ({})\n", v["name"].get<std::string>(), v["address"].get<std::string>(),
               v["attach"].get<int>(), v["namespace"].get<std::string>());
  for (const auto& p : s["prefixes"]) {
    std::vector<std::string> behind;
    for (const auto& [vantage, yes] : p["behind_device_from"].items())
      if (yes.get<bool>()) behind.push_back(vantage);
    size_t untrusted = 0;
    for (const auto& a : p["servers"]) untrusted += a["trusted"].get<bool>() ? 0 : 1;
    fmt::print("prefix  {:<8} {:<16} {:>4} servers ({} untrusted) at r{}; behind the device from: {}\n",
               p["name"].get<std::string>(), p["cidr"].get<std::string>(), p["servers"].size(), untrusted,
               p["attach"].get<int>(), behind.empty() ? "none" : fmt::format("{}", fmt::join(behind, ", ")));
  }
  if (s["namespaces_missing"].get<size_t>() > 0)
    fmt::print("warning: {} namespaces of this lab are missing; run `mitmwatch lab up` again\n",
               s["namespaces_missing"].get<size_t>());
  return cli::kExitOk;
}

int lab_exec_cmd(const LabFlags& f) {
  require_root();
  auto plan = lab::running_plan(f.name);
  if (!plan) throw std::runtime_error(plan.error());
  auto it = plan->vantages.find(f.vantage);
  if (it == plan->vantages.end()) throw UsageError("no vantage '" + f.vantage + "' in lab '" + f.name + "'");
  std::vector<std::string> command = f.command;
  if (!command.empty() && command.front() == "--") command.erase(command.begin());
  if (command.empty()) throw UsageError("give a command after --");
  setenv("MW_LAB_CA", (lab::state_dir(f.name) + "/public-root.pem").c_str(), 1);
  std::vector<std::string> argv{"ip", "netns", "exec", it->second};
  argv.insert(argv.end(), command.begin(), command.end());
  std::vector<char*> c;
  for (auto& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  execvp("ip", c.data());
  throw std::runtime_error("cannot run ip: " + std::string(std::strerror(errno)));
}

}  // namespace

Action add_lab_command(CLI::App& app) {
  auto f = std::make_shared<LabFlags>();
  app.require_subcommand(1);
  app.footer(R"(An emulated network for testing interception end to end (root only): vantage
namespaces, a chain of routers, server namespaces with hundreds of TLS servers,
and an interception device on one link. Addresses are private ranges only;
every namespace is named mw<name>-*.

Examples:
  mitmwatch lab up                       # the default lab (data/lab.toml)
  mitmwatch lab status
  mitmwatch lab exec outside -- mitmwatch scan --allow-private --ca-file /run/mitmwatch-lab/lab/public-root.pem 10.70.0.1
  mitmwatch lab down)");
  auto* up = app.add_subcommand("up", "Build the lab (removing a stale one of the same name first)");
  up->add_option("--config", f->config, "Lab configuration (TOML; default: data/lab.toml, built in)");
  auto* down = app.add_subcommand("down", "Remove the lab: namespaces, links, rules, processes, state");
  auto* status = app.add_subcommand("status", "Topology, vantages, server addresses, device state");
  status->add_flag("--json", f->json, "As JSON");
  auto* exec = app.add_subcommand("exec", "Run a command inside a vantage: lab exec VANTAGE -- CMD...");
  exec->add_option("vantage", f->vantage, "Vantage name (outside, inside)")->required();
  exec->add_option("command", f->command, "The command, after --")->required();
  exec->positionals_at_end();
  auto* demo = app.add_subcommand("demo", "Bring the default lab up, run the study from both vantages, take it down");
  demo->add_flag("--keep", f->json, "Leave the lab up afterwards");
  auto* device = app.add_subcommand("device", "Switch the interception device: lab device on|off|schedule STEP...");
  device->add_option("state", f->prefix, "on, off, or schedule")->required()->check(CLI::IsMember({"on", "off", "schedule"}));
  device->add_option("steps", f->steps, "With schedule: TIME:STATE steps from now, e.g. 0s:on 20s:off 40s:0.5 60s:on");
  device->footer(R"(on and off switch the device now (and drop any schedule). schedule sets a timetable
that starts now: each step TIME:STATE, STATE on, off or a fraction 0..1 of trigger
flows to take over. A [device] schedule = ["0s:on", "10m:off"] key in the lab's
config does the same from `lab up`.

Example:
  mitmwatch lab device schedule 0s:on 30s:off 1m:on     # off for 30 s, then on again)");
  auto* device_run = app.add_subcommand("device-run", "");  // internal: the device process
  device_run->group("");
  auto* delay_run = app.add_subcommand("delay-run", "");  // internal: one router's link delay
  delay_run->group("");
  delay_run->add_option("--router", f->prefix)->required();
  auto* serve = app.add_subcommand("serve", "");  // internal: the server process of one server namespace
  serve->group("");
  serve->add_option("--prefix", f->prefix)->required();
  for (auto* sub : {down, status, exec, serve, device, device_run, delay_run}) sub->add_option("--name", f->name, "Lab name")->capture_default_str();
  return [f, up, down, status, exec, serve, device, device_run, delay_run, demo] {
    if (up->parsed()) return lab_up_cmd(*f);
    if (demo->parsed()) return run_lab_demo(self_exe(), f->json);
    if (down->parsed()) {
      require_root();
      lab::lab_down(f->name);
      fmt::print(stderr, "lab down: '{}' removed\n", f->name);
      return cli::kExitOk;
    }
    if (status->parsed()) return lab_status_cmd(*f);
    if (exec->parsed()) return lab_exec_cmd(*f);
    if (serve->parsed()) return lab::serve_prefix(f->name, f->prefix);
    if (device_run->parsed()) return lab::run_device(f->name);
    if (delay_run->parsed()) {
      auto plan = lab::running_plan(f->name);
      if (!plan) throw std::runtime_error(plan.error());
      return lab::run_link_delay(plan->config.link_delay_ms, lab::run_dir(f->name) + "/delay-" + f->prefix + ".ready");
    }
    if (device->parsed()) {
      require_root();
      if (auto plan = lab::running_plan(f->name); !plan) throw std::runtime_error(plan.error());
      if (f->prefix == "schedule") {
        auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
        auto s = lab::parse_schedule(f->steps, now);
        if (!s) throw UsageError(s.error());
        if (auto ok = lab::write_device_schedule(f->name, *s); !ok) throw std::runtime_error(ok.error());
        fmt::print(stderr, "lab device: schedule of {} steps from now\n", s->steps.size());
        return cli::kExitOk;
      }
      if (!f->steps.empty()) throw UsageError("steps go with 'schedule' only");
      lab::clear_device_schedule(f->name);
      lab::set_device_enabled(f->name, f->prefix == "on");
      if (!lab::wait_device_state(f->name, f->prefix == "on", std::chrono::seconds(3))) {
        fmt::print(stderr, "lab device: switched {}, but the device of lab '{}' has not confirmed it (is the lab up?)\n",
                   f->prefix, f->name);
        return cli::kExitFailure;
      }
      fmt::print(stderr, "lab device: {}\n", f->prefix);
      return cli::kExitOk;
    }
    return cli::kExitUsage;
  };
}

}  // namespace mw::app
