// What scan and trace share on the command line: where targets come from,
// which of them to take, SNI names, and the rules for the output file.
#pragma once

#include "net/opt_out.hpp"
#include "net/targets.hpp"
#include "store/record_sink.hpp"

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace mw::app {

// Polite by default, as zmap's and zgrab2's users are asked to be: new
// handshakes a second in all and to one address. Raise them for your own servers.
inline constexpr double kDefaultRate = 1000;
inline constexpr double kDefaultPerTargetRate = 10;

struct TargetFlags {
  std::vector<std::string> targets;
  std::string input;
  uint16_t port = 443;
  std::string blocklist;
  bool allow_private = false;
  std::string default_blocklist;      // replaces data/blocklist.conf
  std::vector<std::string> opt_out;   // more opt-out lists than the default one
  std::string shard = "0/1";
};

// Adds the positional targets, -i, -p, --blocklist, --allow-private,
// --default-blocklist, --opt-out, --shard.
void add_target_options(CLI::App& app, TargetFlags& f);
// What is never measured: the default blocklist (shipped, replaced or lifted),
// --blocklist, the opt-out lists' prefixes; and the shard. Throws UsageError.
net::TargetFilter target_filter(const TargetFlags& f);
// The opt-out lists: --opt-out FILEs and the default file when it exists.
net::OptOut opt_out_of(const TargetFlags& f);
// `names` without those on the opt-out list; says on stderr how many went.
std::vector<std::string> without_opted_out(const std::vector<std::string>& names, const net::OptOut& o,
                                           const std::string& what, bool quiet);
// The filtered target stream; `require` false allows no targets at all.
// Throws UsageError naming the bad input.
std::unique_ptr<net::TargetStream> open_targets(const TargetFlags& f, bool require = true);

// Who the probes say they are, where a protocol lets them (docs/ethics.md).
struct IdentityFlags {
  std::string user_agent;
  std::string contact;
};
// Adds --user-agent and --contact.
void add_identity_options(CLI::App& app, IdentityFlags& f);
// The User-Agent the probes send: --user-agent, or "mitmwatch/V (+CONTACT)"
// from --contact; empty: the probes send nothing beyond the handshake.
// Throws UsageError on a value HTTP cannot carry.
std::string probe_user_agent(const IdentityFlags& f);

// A label no deny-list holds, under a reserved name (RFC 2606), fresh per run.
std::string random_control_name();
std::vector<std::string> read_lines(const std::string& path, const char* what);
void check_domain(const std::string& name, const std::string& where);
// Where records go and what happens to a file that already holds some: the
// same for every command that writes a record stream.
struct OutputFlags {
  std::string output = "-";
  bool resume = false;
  bool overwrite = false;
  bool quiet = false;
  std::string db;       // empty: no store; --db alone: the default store
  std::string vantage;  // empty: this host's name
  std::string series;   // a monitor's name, when this run is one of its rounds
};
// Adds -o, --resume, --overwrite, -q. `verb` completes "and VERB only what it
// lacks"; `quiet_help` says what -q leaves on stderr.
void add_output_options(CLI::App& app, OutputFlags& f, const std::string& verb, const std::string& quiet_help);
// Refuses --resume onto stdout and clobbering a non-empty output without
// --resume or --overwrite. Throws UsageError.
void check_output(const OutputFlags& f);
// Where the records of `command` go: the output file and, with --db, the store.
store::SinkOptions sink_options(const OutputFlags& f, const std::string& command);
// Adds --db and --vantage, for commands whose -o rules are their own.
void add_store_options(CLI::App& app, OutputFlags& f);
// Adds --db[=PATH] to `app`: `db` gets PATH, or the default store without one.
void add_db_option(CLI::App& app, std::string& db, const std::string& what);
// Adds --db STORE to a command that works on the store (default: `db` as set).
void add_store_flag(CLI::App& app, std::string& db);
// --listen ADDRESS:PORT or [IPv6]:PORT (port 0: any free one). Throws UsageError.
net::Endpoint listen_endpoint(const std::string& listen);
// This program's own path, to run itself (in namespaces, as a monitor's rounds).
std::string self_exe();
// The command line of this process, for the store's runs table.
std::string command_line();

}  // namespace mw::app
