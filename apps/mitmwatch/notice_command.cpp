// `mitmwatch notice`: the web page a scanning host shows on port 80, so an
// operator who sees our handshakes and visits the source address learns who
// we are, why, and how to opt out (docs/ethics.md).
#include "cli/progress.hpp"
#include "commands.hpp"
#include "drivers/notice.hpp"
#include "net/privileges.hpp"
#include "target_input.hpp"

#include <fmt/format.h>
#include <httplib.h>

#include <csignal>
#include <pthread.h>
#include <thread>
#include <unistd.h>

namespace mw::app {
namespace {

struct NoticeFlags {
  drivers::NoticeInfo info;
  std::string listen = "0.0.0.0:80";
  std::string user = net::default_unprivileged_user();
  std::vector<std::string> opt_out;
  bool print = false;
};

int run_notice(NoticeFlags f) {
  if (f.info.contact.empty()) throw UsageError("--contact is required: the page exists to say whom to write");
  TargetFlags lists;
  lists.opt_out = f.opt_out;
  f.info.opted_out = opt_out_of(lists).prefixes.size();
  f.info.rate = kDefaultRate;
  f.info.per_target_rate = kDefaultPerTargetRate;
  std::string page = drivers::notice_html(f.info);
  std::string format = drivers::opt_out_format_text(f.info);
  if (f.print) {
    fmt::print("{}", page);
    return cli::kExitOk;
  }
  net::Endpoint listen = listen_endpoint(f.listen);

  // SIGINT and SIGTERM wait for this thread's sigwait (the server's threads
  // inherit the mask), so no handler needs a global to reach the server.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  httplib::Server server;
  server.Get("/opt-out.txt", [format](const httplib::Request&, httplib::Response& res) {
    res.set_content(format, "text/plain; charset=utf-8");
  });
  // Any other path gets the page: people type the address, crawlers ask for anything.
  server.Get(".*", [page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page, "text/html; charset=utf-8");
  });
  std::string host = listen.ip.to_string();
  int bound = listen.port == 0 ? server.bind_to_any_port(host)
                               : (server.bind_to_port(host, listen.port) ? listen.port : -1);
  if (bound <= 0) throw std::runtime_error("--listen " + f.listen + ": cannot bind (port 80 needs root or CAP_NET_BIND_SERVICE)");
  // The port is bound: the rest runs without root.
  auto dropped = net::drop_to_user(f.user);
  if (!dropped) throw std::runtime_error("giving up privileges: " + dropped.error());
  fmt::print(stderr, "notice: http://{}:{}/ (running as {})\n", listen.ip.family == AF_INET6 ? "[" + host + "]" : host,
             bound, dropped->describe());
  std::fflush(stderr);
  std::thread serving([&server] { server.listen_after_bind(); });
  int signal = 0;
  sigwait(&stop_signals, &signal);
  server.stop();
  serving.join();
  return cli::kExitOk;
}

}  // namespace

Action add_notice_command(CLI::App& app) {
  auto f = std::make_shared<NoticeFlags>();
  app.footer(R"(Serves a page on the scanning host saying who measures, why, what the probes
send, whom to write, and how to opt out (with the opt-out list's format at
/opt-out.txt): what ZMap's scanning best practices ask of every scanner, so an
operator who sees our handshakes and visits the source address gets an answer.
Pair it with a reverse DNS name that says the same (e.g. tls-research.example.org)
and with scan --contact. It binds, then runs as --user.

Examples:
  mitmwatch notice --contact scans@example.org --organization "Example University"
  mitmwatch notice --contact https://example.org/mitm-study --listen 127.0.0.1:8081
  mitmwatch notice --contact scans@example.org --print > /var/www/html/index.html)");
  app.add_option("--contact", f->info.contact, "An e-mail address or URL for operators (required)");
  app.add_option("--organization", f->info.organization, "Who runs the measurement");
  app.add_option("--about", f->info.about, "A URL with more about the study");
  app.add_option("--purpose", f->info.purpose, "The study in a sentence or two (default: HTTPS interception)");
  app.add_option("--opt-out", f->opt_out, "Opt-out lists to count (the default list is read when it exists)");
  app.add_option("--listen", f->listen, "ADDRESS:PORT (port 0: any free one)")->capture_default_str();
  app.add_option("--user", f->user, "Run as this user once the port is bound")->capture_default_str();
  app.add_flag("--print", f->print, "Write the page to stdout instead of serving it");
  return [f] { return run_notice(*f); };
}

}  // namespace mw::app
