// Bringing a lab up and down, and the processes that run inside it.
#pragma once

#include "lab/plan.hpp"

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include <functional>
#include <string>

namespace mw::lab {

// Where a lab keeps its certificates, keys, logs and process ids.
std::string state_dir(const std::string& lab_name);
// <state>/run: the lab's processes, unprivileged once started, write only there
// (readiness, the device's counters); owned by that user.
std::string run_dir(const std::string& lab_name);

struct UpOptions {
  std::string self_exe;  // the mitmwatch binary, run inside namespaces
  std::function<void(const std::string&)> log;  // progress lines for people
};

// Removes any lab of that name first, then builds it: namespaces, links,
// routes, certificate authorities, one server process per server namespace.
// On failure everything made so far is removed.
tl::expected<void, std::string> lab_up(const LabConfig& config, const UpOptions& options);
// Removes every namespace named mw<name>-* (with its links, rules and
// processes) and the state directory. Idempotent.
void lab_down(const std::string& lab_name);
// The running lab's topology and state, or an error when none is up.
tl::expected<nlohmann::ordered_json, std::string> lab_status(const std::string& lab_name);
// The plan of a running lab (from its saved configuration).
tl::expected<LabPlan, std::string> running_plan(const std::string& lab_name);

// The server process of one server namespace (`mitmwatch lab serve`): serves
// every server address of the prefix on port 443 until SIGTERM.
int serve_prefix(const std::string& lab_name, const std::string& prefix_name);

// The server addresses of a prefix (the first `servers` host addresses), and
// whether server i presents an untrusted (self-signed) chain.
net::IpAddress server_address(const PrefixConfig& prefix, int i);
bool server_untrusted(const PrefixConfig& prefix, int i);

}  // namespace mw::lab
