// report and serve: the store shown as a file and as a live page.
#include "cli/progress.hpp"
#include "commands.hpp"
#include "report/report.hpp"
#include "target_input.hpp"

#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>

namespace mw::app {
namespace {

struct ViewFlags {
  std::string db = store::default_db_path();
  std::string series;
  std::string output = "mitmwatch-report.html";
  std::string format;  // html, md; default from -o
  std::string title = "mitmwatch report";
  bool compare = false;
  std::string ca_file, interceptors;
  std::string listen = "127.0.0.1:8080";
  std::string web_root = MW_WEB_DIST;
};

struct Context {
  tls::TrustStore trust;
  certs::InterceptorRegistry registry;
};

Context context_of(const ViewFlags& f) {
  auto trust = tls::TrustStore::from_file(f.ca_file.empty() ? tls::TrustStore::kSystemBundle : f.ca_file);
  if (!trust) throw UsageError("--ca-file " + trust.error());
  auto registry = f.interceptors.empty() ? certs::InterceptorRegistry::builtin()
                                         : certs::InterceptorRegistry::from_file(f.interceptors);
  if (!registry) throw UsageError("--interceptors " + registry.error());
  return {std::move(*trust), std::move(*registry)};
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path + ".tmp", std::ios::binary);
  out << text;
  out.close();
  if (!out) throw std::runtime_error(path + ": cannot write");
  std::filesystem::rename(path + ".tmp", path);
}

int run_report(const ViewFlags& f) {
  auto st = store::Store::open_read_only(f.db);
  if (!st) throw UsageError("--db " + st.error());
  std::string format = f.format;
  auto ends = [&](const std::string& ext) {
    return f.output.size() > ext.size() && f.output.compare(f.output.size() - ext.size(), ext.size(), ext) == 0;
  };
  if (format.empty()) format = ends(".md") ? "md" : ends(".json") ? "json" : "html";
  if (format != "html" && format != "md" && format != "json") throw UsageError("--format must be html, md or json");
  auto ctx = context_of(f);
  report::ReportOptions o;
  o.series = f.series;
  o.title = f.title;
  o.compare = f.compare;
  auto stem = std::filesystem::path(f.output).stem().string();
  o.figure_prefix = stem;
  auto r = report::build_report(*st, ctx.trust, ctx.registry, o);
  if (!r) throw std::runtime_error(r.error());
  if (format == "json") {
    write_text(f.output, r->data.dump(2, ' ', false, store::Json::error_handler_t::replace) + "\n");
  } else if (format == "html") {
    write_text(f.output, r->html);
  } else {
    write_text(f.output, r->markdown);
    auto dir = std::filesystem::path(f.output).parent_path();
    for (const auto& fig : r->figures) write_text((dir / (stem + "-" + fig.name + ".svg")).string(), fig.svg + "\n");
  }
  fmt::print(stderr, "report: {}{}\n", f.output, format == "md" ? fmt::format(" and {} SVG figures", r->figures.size()) : "");
  return cli::kExitOk;
}

std::atomic<httplib::Server*> g_server{nullptr};
extern "C" void on_serve_signal(int) {
  if (auto* s = g_server.load()) s->stop();
}

int run_serve(const ViewFlags& f) {
  if (auto st = store::Store::open_read_only(f.db); !st) throw UsageError("--db " + st.error());
  if (!std::filesystem::exists(std::filesystem::path(f.web_root) / "index.html"))
    throw UsageError("--web-root " + f.web_root +
                     ": no index.html; the front end is built by scripts/install-deps (cd web && npm ci && npm run build)");
  net::Endpoint listen = listen_endpoint(f.listen);
  std::string host = listen.ip.to_string();
  int port = listen.port;
  auto ctx = std::make_shared<Context>(context_of(f));

  httplib::Server server;
  const std::string db = f.db;
  // One read-only connection per request: requests run on the server's threads
  // and a monitor may be writing; WAL lets them all read at once.
  auto api = [&server, db](const std::string& path, std::function<tl::expected<store::Json, store::Error>(
                                                         store::Store&, const httplib::Request&)> view) {
    server.Get(path, [db, view](const httplib::Request& req, httplib::Response& res) {
      auto st = store::Store::open_read_only(db);
      tl::expected<store::Json, store::Error> out = st ? view(*st, req) : tl::unexpected(st.error());
      if (!out) {
        res.status = 400;
        res.set_content(store::Json{{"error", out.error()}}.dump(), "application/json");
        return;
      }
      res.set_header("Cache-Control", "no-store");
      res.set_content(out->dump(-1, ' ', false, store::Json::error_handler_t::replace), "application/json");
    });
  };
  auto param = [](const httplib::Request& req, const char* name) {
    return req.has_param(name) ? req.get_param_value(name) : std::string();
  };
  api("/api/overview", [](store::Store& s, const httplib::Request&) { return store::overview(s); });
  api("/api/series", [param](store::Store& s, const httplib::Request& q) { return store::series_points(s, param(q, "series")); });
  api("/api/events", [param](store::Store& s, const httplib::Request& q) { return store::event_list(s, param(q, "series")); });
  api("/api/compare", [](store::Store& s, const httplib::Request&) { return store::compare_vantages(s); });
  api("/api/hops", [](store::Store& s, const httplib::Request&) { return store::hop_pairs(s); });
  api("/api/domains", [](store::Store& s, const httplib::Request&) { return store::domains(s); });
  api("/api/servers", [](store::Store& s, const httplib::Request&) { return store::servers(s); });
  api("/api/issuers", [](store::Store& s, const httplib::Request&) { return store::issuers(s); });
  api("/api/recipes", [ctx](store::Store& s, const httplib::Request&) { return store::recipes(s, ctx->trust, ctx->registry); });
  api("/api/certpair", [ctx, param](store::Store& s, const httplib::Request& q) -> tl::expected<store::Json, store::Error> {
    auto id = param(q, "record");
    if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
      return tl::unexpected(store::Error("record=ID needed"));
    return store::cert_pair(s, std::stoll(id), ctx->trust, ctx->registry);
  });
  if (!server.set_mount_point("/", f.web_root)) throw UsageError("--web-root " + f.web_root + ": not a directory");

  int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) throw std::runtime_error("--listen " + f.listen + ": cannot bind");
  g_server = &server;
  std::signal(SIGINT, on_serve_signal);
  std::signal(SIGTERM, on_serve_signal);
  fmt::print(stderr, "serve: http://{}:{}/ over {}\n", host, bound, f.db);
  std::fflush(stderr);
  server.listen_after_bind();
  g_server = nullptr;
  return cli::kExitOk;
}

void add_view_options(CLI::App& app, ViewFlags& f) {
  add_store_flag(app, f.db);
  app.add_option("--ca-file", f.ca_file, "Root store for the certificate diffs (default: the system's)");
  app.add_option("--interceptors", f.interceptors, "Registry of known interception roots (default: built in)");
}

}  // namespace

Action add_report_command(CLI::App& app) {
  auto f = std::make_shared<ViewFlags>();
  app.footer(R"(One self-contained HTML file (inline SVG, no scripts) or Markdown with its SVG
figures beside it: the share intercepted per vantage over time with the detected
events marked, the injection hop pairs, domains, forged issuers, forgery recipes,
and every run.

Examples:
  mitmwatch report -o kz.html
  mitmwatch report --series kz -o docs/kz.md      # kz.md, kz-share.svg, kz-hops.svg, ...
  mitmwatch report --compare -o vantages.html      # outside vs inside: the study's 7 % vs 24 %
  mitmwatch report --compare -o all.json && jq .compare.vantages all.json)");
  add_view_options(app, *f);
  app.add_option("-o,--output", f->output, "The report file (.html or .md)")->capture_default_str();
  app.add_option("--format", f->format, "html, md, or json (every view the report draws; default: from -o)");
  app.add_flag("--compare", f->compare,
               "Add the vantages side by side: share intercepted, hosts intercepted from one and not another, "
               "injector hops");
  app.add_option("--series", f->series, "Only this monitor's rounds in the time series");
  app.add_option("--title", f->title, "Heading")->capture_default_str();
  return [f] { return run_report(*f); };
}

Action add_serve_command(CLI::App& app) {
  auto f = std::make_shared<ViewFlags>();
  app.footer(R"(A local dashboard over the store: the share intercepted per vantage over time,
the events (click one for the real and forged certificates side by side), and
the domains, servers, hop pairs and issuers. JSON under /api/ (overview, series,
events, domains, servers, hops, issuers, recipes, compare, certpair?record=ID).

Examples:
  mitmwatch serve                          # http://127.0.0.1:8080/
  mitmwatch serve --db study.db --listen 127.0.0.1:0   # a free port, printed on stderr)");
  add_view_options(app, *f);
  app.add_option("--listen", f->listen, "HOST:PORT (port 0: any free one)")->capture_default_str();
  app.add_option("--web-root", f->web_root, "The built front end")->capture_default_str();
  return [f] { return run_serve(*f); };
}

}  // namespace mw::app
