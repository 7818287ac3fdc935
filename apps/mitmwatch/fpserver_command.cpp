// `mitmwatch fpserver`: a TLS server that fingerprints who really connects
// to it, and tells each client what it saw.
#include "certs/issue.hpp"
#include "certs/x509.hpp"
#include "cli/progress.hpp"
#include "commands.hpp"
#include "target_input.hpp"
#include "drivers/fpserver.hpp"
#include "io/jsonl.hpp"
#include "net/privileges.hpp"

#include <fmt/format.h>

#include <csignal>
#include <unistd.h>

namespace mw::app {
namespace {

// Set by SIGINT/SIGTERM: a signal handler can only reach a global.
std::atomic<bool> g_fpserver_stop{false};
void on_fpserver_signal(int) { g_fpserver_stop = true; }

struct FpFlags : OutputFlags {
  std::string listen = "0.0.0.0:8443";
  std::string cert, key, name = "localhost";
  std::string expect, fingerprints;
  size_t max_connections = 1024;
  double hello_timeout = 5, handshake_timeout = 10, request_timeout = 10;
  bool quic = false;
  std::string upstream, browsers;
  double upstream_timeout = 30;
  std::string user = net::default_unprivileged_user();
  size_t max_body = 1 << 20;
};

// http://ADDRESS:PORT (the backend beside the server; TLS to it is not ours to add).
net::Endpoint parse_upstream(const std::string& url) {
  const std::string scheme = "http://";
  auto bad = [&](const std::string& why) { return UsageError("--upstream " + url + ": " + why); };
  if (url.rfind(scheme, 0) != 0) throw bad("must start with http:// (the backend speaks plain HTTP beside us)");
  std::string rest = url.substr(scheme.size());
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    if (rest.substr(slash) != "/") throw bad("no path: requests keep their own");
    rest.resize(slash);
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) throw bad("needs a port");
  std::string host = rest.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto address = net::IpAddress::parse(host);
  if (!address) throw bad("the host must be an IP address or localhost");
  std::string port = rest.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) < 1 || std::stoi(port) > 65535)
    throw bad("the port must be 1-65535");
  return {*address, static_cast<uint16_t>(std::stoi(port))};
}

int run_fpserver(const FpFlags& f) {
  net::Endpoint listen = listen_endpoint(f.listen);
  if ((f.cert.empty()) != (f.key.empty())) throw UsageError("--cert and --key go together");
  certs::ServedChain chain;
  if (!f.cert.empty()) {
    auto certs_in = certs::read_pem_file(f.cert);
    if (!certs_in || certs_in->empty()) throw UsageError("--cert " + (certs_in ? f.cert + ": no certificate" : certs_in.error()));
    auto key = certs::read_key_pem_file(f.key);
    if (!key) throw UsageError("--key " + key.error());
    chain.leaf = std::move(certs_in->front());
    for (size_t i = 1; i < certs_in->size(); ++i) chain.intermediates.push_back(std::move((*certs_in)[i]));
    chain.key = std::move(*key);
  } else {
    chain = certs::make_self_signed(f.name);
  }
  std::optional<fingerprint::Expectations> expectations;
  if (!f.expect.empty()) {
    auto e = fingerprint::Expectations::from_file(f.expect);
    if (!e) throw UsageError("--expect " + e.error());
    expectations = std::move(*e);
  }
  auto registry = f.fingerprints.empty() ? fingerprint::FingerprintRegistry::builtin()
                                         : fingerprint::FingerprintRegistry::from_file(f.fingerprints);
  if (!registry) throw UsageError("--fingerprints " + registry.error());
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<long>(s * 1000)); };
  if (f.max_connections < 1 || f.hello_timeout <= 0 || f.handshake_timeout <= 0 || f.request_timeout <= 0)
    throw UsageError("--max-connections and the timeouts must be > 0");
  drivers::FpServerOptions o;
  o.listen = listen;
  o.max_connections = f.max_connections;
  o.hello_timeout = ms(f.hello_timeout);
  o.handshake_timeout = ms(f.handshake_timeout);
  o.request_timeout = ms(f.request_timeout);
  o.quic = f.quic;
  if (!f.upstream.empty()) o.upstream = parse_upstream(f.upstream);
  if (f.upstream_timeout <= 0) throw UsageError("--upstream-timeout must be > 0");
  o.upstream_timeout = ms(f.upstream_timeout);
  o.max_body_bytes = f.max_body;
  auto browsers = f.browsers.empty() ? fingerprint::BrowserTable::builtin() : fingerprint::BrowserTable::from_file(f.browsers);
  if (!browsers) throw UsageError("--browsers " + browsers.error());
  auto server = drivers::FpServer::open(o, chain);
  if (!server) throw std::runtime_error(server.error());
  // A server's log grows across runs: appended to, never replaced.
  auto sink = sink_options(f, "fpserver");
  sink.append = true;
  sink.batch = 1;  // connections come seldom: each record committed as it comes
  auto out = store::RecordSink::open(sink);
  if (!out) throw std::runtime_error(out.error());

  // Port 443 bound and the log open: a server run as root goes on as an
  // unprivileged user with no capabilities.
  auto dropped = net::drop_to_user(f.user);
  if (!dropped) throw std::runtime_error("giving up privileges: " + dropped.error());
  if (!f.quiet && geteuid() != 0) fmt::print(stderr, "fpserver: sockets open; running as {}\n", dropped->describe());
  std::signal(SIGINT, on_fpserver_signal);
  std::signal(SIGTERM, on_fpserver_signal);
  std::signal(SIGPIPE, SIG_IGN);
  if (!f.quiet) {
    if (o.upstream)
      fmt::print(stderr, "fpserver: listening on {}{} in front of http://{} (the verdict at https://{}/.mitmwatch)\n",
                 (*server)->local().to_string(), f.quic ? " (TCP and QUIC)" : "", o.upstream->to_string(),
                 (*server)->local().to_string());
    else
      fmt::print(stderr, "fpserver: listening on {}{} (https://{}/ and /json)\n", (*server)->local().to_string(),
                 f.quic ? " (TCP and QUIC)" : "", (*server)->local().to_string());
  }
  drivers::FpServerContext ctx{&*registry, expectations ? &*expectations : nullptr, &*browsers};
  std::string write_error;
  uint64_t flagged = 0;
  auto stats = (*server)->run(ctx, g_fpserver_stop, [&](const nlohmann::ordered_json& r) {
    if (!r["flags"].empty()) ++flagged;
    if (auto ok = out->write(r); !ok && write_error.empty()) write_error = ok.error();
  });
  if (auto ok = out->finish(true); !ok && write_error.empty()) write_error = ok.error();
  if (!f.quiet)
    fmt::print(stderr, "fpserver: {} connections, {} served, {} QUIC hellos, {} refused over --max-connections, {} flagged\n",
               stats.accepted, stats.served, stats.quic_hellos, stats.refused_over_cap, flagged);
  if (!write_error.empty()) throw std::runtime_error(write_error);
  return cli::kExitOk;
}

}  // namespace

Action add_fpserver_command(CLI::App& app) {
  auto f = std::make_shared<FpFlags>();
  app.footer(R"(Examples:
  mitmwatch fpserver --listen 0.0.0.0:443 --cert chain.pem --key key.pem -o hellos.jsonl
  mitmwatch fpserver --expect probes.json -o hellos.jsonl     # flag clients that are not what they should be
  curl -k https://localhost:8443/json                         # what the server saw of you

Reads each ClientHello before the TLS library does and logs, per connection (JSON Lines,
schema mitmwatch.fpserver/1): source address and port, the SYN's IP TTL and TCP options,
SNI, ALPN, ja3, ja4 (ja4_r, ja4_o, ja4_ro), tlsfp, the raw ClientHello, the handshake's
outcome, the HTTP request line and User-Agent. Then it answers with a page showing the
client these fingerprints (and JSON at /json).

A box that intercepts TLS and re-originates the connection sends its own ClientHello
(the report: tlsfingerprint.io f09427b5aaf9304b instead of the client's). Such hellos are
flagged: `interceptor-fingerprint` when the registry (data/fingerprints.json) knows them,
`fingerprint-mismatch` when --expect says what this source or User-Agent sends:
  {"sources": [{"cidr": "198.51.100.0/24", "name": "probe", "ja4": ["t13d..."]}],
   "user_agents": [{"contains": "curl/", "ja3": ["..."]}]}

In front of a site (--upstream http://127.0.0.1:8080), each request goes on to the
backend with what the alarm says of its connection, and the visitor can see it at
/.mitmwatch (JSON at /.mitmwatch/json):
  X-Mitmwatch-Verdict: intercepted; reason="the hello is a known device's own: ..."
  X-Mitmwatch-JA4, X-Mitmwatch-JA3 (the client's own X-Mitmwatch-* headers are dropped)
  ok           the hello fits the browser the User-Agent claims
  mismatch     the User-Agent claims a browser whose engine never sends such a hello
  intercepted  the hello is a known interception device's own (--fingerprints)
  unknown      the User-Agent names no browser family in the table (--browsers)
Every record carries the same verdict ("verdict").

Floods and hostile clients cost their own connection: at most --max-connections at once,
a deadline per phase (hello, handshake, request), bounded buffers.

Exit codes: 0 stopped by SIGINT/SIGTERM; 1 runtime failure; 2 bad usage.)");
  app.add_option("--listen", f->listen, "Address and port to listen on")->capture_default_str();
  app.add_option("--cert", f->cert, "PEM: the certificate, then its intermediates");
  app.add_option("--key", f->key, "PEM: the certificate's private key");
  app.add_option("--name", f->name, "Without --cert: a self-signed certificate for this name")->capture_default_str();
  app.add_option("-o,--output", f->output, "JSON Lines log, appended to ('-': stdout)")->capture_default_str();
  app.add_option("--expect", f->expect, "Expected fingerprints per source prefix and User-Agent (JSON)");
  app.add_option("--fingerprints", f->fingerprints, "Registry of interception devices' fingerprints (default: built in)");
  app.add_option("--max-connections", f->max_connections, "Connections at once; more are closed at accept")
      ->capture_default_str();
  app.add_option("--hello-timeout", f->hello_timeout, "Seconds for the ClientHello to arrive")->capture_default_str();
  app.add_option("--handshake-timeout", f->handshake_timeout, "Seconds for the TLS handshake")->capture_default_str();
  app.add_option("--request-timeout", f->request_timeout, "Seconds for the HTTP request")->capture_default_str();
  app.add_option("--upstream", f->upstream, "In front of a site: pass requests to this HTTP backend (http://ADDRESS:PORT) with the verdict added");
  app.add_option("--browsers", f->browsers, "Browser families and their hello shapes (default: built in, data/browser-fingerprints.json)");
  app.add_option("--upstream-timeout", f->upstream_timeout, "Seconds for the backend's whole response")->capture_default_str();
  app.add_option("--max-body", f->max_body, "Largest request body passed on, in bytes")->capture_default_str();
  app.add_option("--user", f->user, "Run as root? Once the sockets and files are open, go on as this user with no capabilities")
      ->capture_default_str();
  app.add_flag("--quic", f->quic, "Also read QUIC Initials on the same UDP port: their ClientHellos are logged (transport quic), nothing is answered");
  app.add_flag("-q,--quiet", f->quiet, "No messages on stderr");
  add_store_options(app, *f);
  return [f] { return run_fpserver(*f); };
}

}  // namespace mw::app
