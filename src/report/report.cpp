#include "report/report.hpp"

#include "io/duration.hpp"
#include "report/svg.hpp"

#include <fmt/format.h>

#include <map>

namespace mw::report {
namespace {

using store::Json;

std::string when(const Json& ms) {
  if (!ms.is_number()) return "-";
  return io::utc_time(ms.get<int64_t>(), ' ');
}

// A table in both forms, from rows of cells.
struct Table {
  std::vector<std::string> head;
  std::vector<std::vector<std::string>> rows;
  std::string html() const {
    std::string out = "<table><tr>";
    for (const auto& h : head) out += "<th>" + xml_escape(h) + "</th>";
    out += "</tr>";
    for (const auto& r : rows) {
      out += "<tr>";
      for (const auto& c : r) out += "<td>" + xml_escape(c) + "</td>";
      out += "</tr>";
    }
    return out + "</table>";
  }
  std::string markdown() const {
    auto cell = [](std::string c) {
      for (size_t p = 0; (p = c.find('|', p)) != std::string::npos; p += 2) c.replace(p, 1, "\\|");
      return c;
    };
    std::string out = "|";
    for (const auto& h : head) out += " " + cell(h) + " |";
    out += "\n|";
    for (size_t i = 0; i < head.size(); ++i) out += "---|";
    out += "\n";
    for (const auto& r : rows) {
      out += "|";
      for (const auto& c : r) out += " " + cell(c) + " |";
      out += "\n";
    }
    return out;
  }
};

std::string pct(double v) { return fmt::format("{:.1f} %", 100 * v); }

}  // namespace

tl::expected<Report, store::Error> build_report(store::Store& s, const tls::TrustStore& trust,
                                                const certs::InterceptorRegistry& registry, const ReportOptions& o) {
  auto overview = store::overview(s);
  if (!overview) return tl::unexpected(overview.error());
  auto points = store::series_points(s, o.series);
  if (!points) return tl::unexpected(points.error());
  auto events = store::event_list(s, o.series);
  if (!events) return tl::unexpected(events.error());
  auto hops = store::hop_pairs(s, 15);
  if (!hops) return tl::unexpected(hops.error());
  auto domains = store::domains(s, 40);
  if (!domains) return tl::unexpected(domains.error());
  auto issuers = store::issuers(s);
  if (!issuers) return tl::unexpected(issuers.error());
  auto recipes = store::recipes(s, trust, registry, 100);
  if (!recipes) return tl::unexpected(recipes.error());

  Report r;
  // Share intercepted over time, a line per vantage, the events marked.
  std::map<std::string, Line> by_vantage;
  for (const auto& p : *points) {
    auto& l = by_vantage[p["vantage"].get<std::string>()];
    l.name = p["vantage"].get<std::string>();
    l.points.push_back({p["at_ms"].get<int64_t>(), p["share"].get<double>()});
  }
  std::vector<Line> lines;
  for (auto& [_, l] : by_vantage) lines.push_back(std::move(l));
  std::vector<Marker> markers;
  for (const auto& e : *events)
    markers.push_back({e["at_ms"].get<int64_t>(), e["type"].get<std::string>() + ": " + e["subject"].get<std::string>(),
                       e["type"] == "interception-stopped"});
  r.figures.push_back({"share", time_series_svg(lines, markers, "Share of records intercepted, per vantage")});
  std::vector<std::pair<std::string, double>> hop_bars, domain_bars, issuer_bars;
  for (const auto& h : *hops)
    hop_bars.push_back({h["before"].get<std::string>() + " → " + h["after"].get<std::string>(), h["count"].get<double>()});
  for (const auto& d : *domains)
    if (d["intercepted"].get<int64_t>() > 0)
      domain_bars.push_back({d["sni"].get<std::string>() + " (" + d["vantage"].get<std::string>() + ")",
                             100 * d["share"].get<double>()});
  if (domain_bars.size() > 25) domain_bars.resize(25);
  for (const auto& i : *issuers) issuer_bars.push_back({i["issuer"].get<std::string>(), i["records"].get<double>()});
  r.figures.push_back({"hops", bar_chart_svg(hop_bars, "Injection hop pairs (traces): last hop before → first after", "")});
  r.figures.push_back({"domains", bar_chart_svg(domain_bars, "Domains: share of their records intercepted", " %")});
  r.figures.push_back({"issuers", bar_chart_svg(issuer_bars, "Forged chains' issuers: records", "")});

  Table runs_table{{"run", "started", "vantage", "series", "records", "intercepted", "share"}, {}};
  for (const auto& p : *points)
    runs_table.rows.push_back({std::to_string(p["run_id"].get<int64_t>()), when(p["at_ms"]), p["vantage"],
                               p["series"], std::to_string(p["records"].get<int64_t>()),
                               std::to_string(p["intercepted"].get<int64_t>()), pct(p["share"].get<double>())});
  Table events_table{{"when", "vantage", "event", "what"}, {}};
  for (const auto& e : *events)
    events_table.rows.push_back({when(e["at_ms"]), e["vantage"], e["type"], e["subject"]});
  Table domains_table{{"domain", "vantage", "records", "intercepted", "share", "last seen"}, {}};
  for (const auto& d : *domains)
    domains_table.rows.push_back({d["sni"], d["vantage"], std::to_string(d["records"].get<int64_t>()),
                                  std::to_string(d["intercepted"].get<int64_t>()), pct(d["share"].get<double>()),
                                  when(d["last_ms"])});
  Table hops_table{{"hop before", "hop after", "traces", "share"}, {}};
  for (const auto& h : *hops)
    hops_table.rows.push_back({h["before"], h["after"], std::to_string(h["count"].get<int64_t>()), pct(h["share"].get<double>())});
  std::string recipes_text;
  for (const auto& rc : *recipes) recipes_text += rc["text"].get<std::string>() + "\n";
  if (recipes_text.empty()) recipes_text = "No intercepted scan record with a control to compare.\n";

  // Vantages compared: what each saw, and the hosts only one of them saw forged.
  std::string compare_html, compare_md;
  Json compared = nullptr;
  if (o.compare) {
    auto c = store::compare_vantages(s);
    if (!c) return tl::unexpected(c.error());
    compared = *c;
    std::vector<std::pair<std::string, double>> bars;
    Table per{{"vantage", "runs", "records", "intercepted", "share", "hosts intercepted", "injector hops (traces)"}, {}};
    for (const auto& v : (*c)["vantages"]) {
      bars.push_back({v["vantage"].get<std::string>(), 100 * v["share"].get<double>()});
      std::string hops;
      for (const auto& h : v["injector_hops"])
        hops += (hops.empty() ? "" : ", ") + fmt::format("{} ({})", h["hop"].get<int64_t>(), h["traces"].get<int64_t>());
      per.rows.push_back({v["vantage"], std::to_string(v["runs"].get<int64_t>()),
                          std::to_string(v["records"].get<int64_t>()), std::to_string(v["intercepted"].get<int64_t>()),
                          pct(v["share"].get<double>()),
                          fmt::format("{} of {}", v["hosts_intercepted"].get<int64_t>(), v["hosts"].get<int64_t>()),
                          hops.empty() ? "-" : hops});
    }
    Table diff{{"intercepted from", "not from", "hosts", "e.g."}, {}};
    for (const auto& d : (*c)["intercepted_from_one_not_the_other"]) {
      std::string eg;
      for (size_t i = 0; i < d["examples"].size() && i < 5; ++i)
        eg += (eg.empty() ? "" : ", ") + d["examples"][i].get<std::string>();
      diff.rows.push_back({d["intercepted_from"], d["not_from"], std::to_string(d["hosts"].get<int64_t>()), eg});
    }
    r.figures.push_back({"vantages", bar_chart_svg(bars, "Share of scan records intercepted, per vantage", " %")});
    compare_html = "<h2>Vantages compared</h2>" + r.figures.back().svg + per.html() + diff.html();
    compare_md = "\n## Vantages compared\n\n![vantages](" + o.figure_prefix + "-vantages.svg)\n\n" + per.markdown() +
                 "\n" + diff.markdown();
  }
  r.data = Json{{"overview", *overview}, {"series", *points},   {"events", *events}, {"hops", *hops},
                {"domains", *domains},   {"issuers", *issuers}, {"recipes", *recipes}, {"compare", compared}};

  const auto& ov = *overview;
  std::string summary = fmt::format(
      "{} runs, {} records, {} distinct certificates, {} events; vantages: {}; from {} to {}.", ov["runs"].get<int64_t>(),
      ov["records"].get<int64_t>(), ov["certificates"].get<int64_t>(), ov["events"].get<int64_t>(),
      [&] {
        std::string v;
        for (const auto& x : ov["vantages"]) v += (v.empty() ? "" : ", ") + x.get<std::string>();
        return v.empty() ? std::string("none") : v;
      }(),
      when(ov["first_ms"]), when(ov["last_ms"]));
  if (!o.series.empty()) summary += " Series shown: " + o.series + ".";

  auto fig = [&](const std::string& name) {
    for (const auto& f : r.figures)
      if (f.name == name) return f.svg;
    return std::string();
  };
  r.html = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + xml_escape(o.title) +
           "</title><style>body{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}"
           "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;"
           "text-align:left}th{background:#f3f3f3}pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;font-size:12px}"
           "</style></head><body><h1>" +
           xml_escape(o.title) + "</h1><p>" + xml_escape(summary) + "</p>" + compare_html + "<h2>Interception over time</h2>" + fig("share") +
           "<p>Dashed lines: detected events (red: interception stopped).</p><h2>Events</h2>" + events_table.html() +
           "<h2>Where the device sits</h2>" + fig("hops") + hops_table.html() + "<h2>Domains</h2>" + fig("domains") +
           domains_table.html() + "<h2>Forged issuers</h2>" + fig("issuers") + "<h2>Forgery recipes</h2><pre>" +
           xml_escape(recipes_text) + "</pre><h2>Runs</h2>" + runs_table.html() +
           "<p><small>mitmwatch " MW_VERSION "</small></p></body></html>\n";
  auto img = [&](const std::string& name, const std::string& alt) {
    return "![" + alt + "](" + o.figure_prefix + "-" + name + ".svg)\n\n";
  };
  r.markdown = "# " + o.title + "\n\n" + summary + "\n" + compare_md + "\n## Interception over time\n\n" +
               img("share", "share intercepted per vantage") +
               "Dashed lines: detected events (red: interception stopped).\n\n## Events\n\n" + events_table.markdown() +
               "\n## Where the device sits\n\n" + img("hops", "hop pairs") + hops_table.markdown() + "\n## Domains\n\n" +
               img("domains", "domains") + domains_table.markdown() + "\n## Forged issuers\n\n" +
               img("issuers", "issuers") + "## Forgery recipes\n\n```\n" + recipes_text + "```\n\n## Runs\n\n" +
               runs_table.markdown();
  return r;
}

}  // namespace mw::report
