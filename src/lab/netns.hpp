// Running the commands that build and tear down the lab: iproute2, sysctl,
// iptables-legacy. Shelling out to the standard tools keeps the lab's
// actions visible and reproducible by hand (each is logged).
#pragma once

#include <tl/expected.hpp>

#include <functional>
#include <string>
#include <vector>

namespace mw::lab {

using Argv = std::vector<std::string>;

// Runs argv (searched in PATH), waits, and fails with its stderr.
tl::expected<void, std::string> run(const Argv& argv);
// Runs argv inside a namespace (ip netns exec NS ...).
tl::expected<void, std::string> run_in(const std::string& ns, const Argv& argv);
// Runs argv and returns its stdout.
tl::expected<std::string, std::string> capture(const Argv& argv);

std::vector<std::string> list_namespaces();
// Kills every process in the namespace, then deletes it. Missing: no error.
void delete_namespace(const std::string& ns);

// Starts argv inside a namespace as a detached process (own session), output
// to `log_path`; returns its pid.
tl::expected<int, std::string> spawn_in(const std::string& ns, const Argv& argv, const std::string& log_path);

}  // namespace mw::lab
