// mitmwatch: an observatory for HTTPS interception.
#include "cli/progress.hpp"
#include "commands.hpp"

#include <fmt/format.h>

#include <map>

int main(int argc, char** argv) {
  CLI::App app{
      "mitmwatch: find where a network swaps real TLS certificates for forged ones.\n"
      "Start with `mitmwatch demo`, then `mitmwatch scan --help`."};
  app.set_version_flag("--version", std::string("mitmwatch ") + MW_VERSION);
  app.require_subcommand(1);
  std::map<CLI::App*, mw::app::Action> actions;
  auto* scan = app.add_subcommand("scan", "TLS handshakes with trigger and control SNIs; detects forged certificates");
  actions[scan] = mw::app::add_scan_command(*scan);
  auto* sweep = app.add_subcommand("sweep", "Which of many domains trigger interception, and by what matching rule");
  actions[sweep] = mw::app::add_sweep_command(*sweep);
  auto* trace = app.add_subcommand("trace", "TTL-limited ClientHellos: the hop where forged certificates are injected (root)");
  actions[trace] = mw::app::add_trace_command(*trace);
  auto* demo = app.add_subcommand("demo", "Start local TLS servers, some behind a stand-in interceptor, and scan them");
  actions[demo] = mw::app::add_demo_command(*demo);
  auto* certs = app.add_subcommand("certs", "Forensics of forged certificates: diff, recipes, shapes");
  actions[certs] = mw::app::add_certs_command(*certs);
  auto* pcap = app.add_subcommand("pcap", "TLS connections of capture files: fingerprints (JA3, JA4, tlsfp), chains, signs of interception");
  actions[pcap] = mw::app::add_pcap_command(*pcap);
  auto* fpserver = app.add_subcommand("fpserver", "A TLS server that fingerprints who really connects to it (JA3, JA4, tlsfp)");
  actions[fpserver] = mw::app::add_fpserver_command(*fpserver);
  auto* monitor = app.add_subcommand("monitor", "Scan rounds on a schedule into the store; events when interception starts, stops, moves");
  actions[monitor] = mw::app::add_monitor_command(*monitor);
  auto* report = app.add_subcommand("report", "A self-contained HTML or Markdown report of the store, with SVG plots");
  actions[report] = mw::app::add_report_command(*report);
  auto* serve = app.add_subcommand("serve", "A local web dashboard over the store");
  actions[serve] = mw::app::add_serve_command(*serve);
  auto* atlas = app.add_subcommand("atlas", "RIPE Atlas sslcert: measurement definitions out, results in as scan records");
  actions[atlas] = mw::app::add_atlas_command(*atlas);
  auto* import = app.add_subcommand("import", "Load JSON Lines files into the store (idempotent)");
  actions[import] = mw::app::add_import_command(*import);
  auto* runs = app.add_subcommand("runs", "List the runs in the store");
  actions[runs] = mw::app::add_runs_command(*runs);
  auto* exp = app.add_subcommand("export", "Write a stored run's records as JSON Lines");
  actions[exp] = mw::app::add_export_command(*exp);
  auto* campaign = app.add_subcommand("campaign", "Many vantages, one store: a target list x SNIs x vantages as jobs for agents");
  actions[campaign] = mw::app::add_campaign_command(*campaign);
  auto* agent = app.add_subcommand("agent", "Claim and run a vantage's campaign jobs, storing each job's records once");
  actions[agent] = mw::app::add_agent_command(*agent);
  auto* notice = app.add_subcommand("notice", "The scanning host's web page: who measures, why, whom to write, how to opt out");
  actions[notice] = mw::app::add_notice_command(*notice);
  auto* lab = app.add_subcommand("lab", "An emulated network with an interception device (root)");
  actions[lab] = mw::app::add_lab_command(*lab);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return mw::cli::kExitUsage;
  }
  for (auto* sub : app.get_subcommands()) {
    try {
      return actions.at(sub)();
    } catch (const mw::app::UsageError& e) {
      fmt::print(stderr, "mitmwatch {}: {}\n", sub->get_name(), e.what());
      return mw::cli::kExitUsage;
    } catch (const std::exception& e) {
      fmt::print(stderr, "mitmwatch {}: {}\n", sub->get_name(), e.what());
      return mw::cli::kExitFailure;
    }
  }
  return mw::cli::kExitUsage;
}
