// One function per subcommand: each adds its flags to the CLI11 app and
// returns the action to run once parsing succeeded.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace mw::app {

using Action = std::function<int()>;

Action add_scan_command(CLI::App& app);
Action add_sweep_command(CLI::App& app);
Action add_trace_command(CLI::App& app);
Action add_demo_command(CLI::App& app);
Action add_lab_command(CLI::App& app);
Action add_certs_command(CLI::App& app);
Action add_pcap_command(CLI::App& app);
Action add_fpserver_command(CLI::App& app);
Action add_import_command(CLI::App& app);
Action add_monitor_command(CLI::App& app);
Action add_atlas_command(CLI::App& app);
Action add_report_command(CLI::App& app);
Action add_serve_command(CLI::App& app);
Action add_runs_command(CLI::App& app);
Action add_export_command(CLI::App& app);
Action add_campaign_command(CLI::App& app);
Action add_agent_command(CLI::App& app);
Action add_notice_command(CLI::App& app);
int run_lab_demo(const std::string& self_exe, bool keep);

// A usage error found after parsing: printed and mapped to exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace mw::app
