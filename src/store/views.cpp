#include "store/views.hpp"

#include "certs/forensics.hpp"
#include "certs/x509.hpp"

#include <fmt/format.h>

namespace mw::store {
namespace {

// Runs a query and turns each row into an object with `names` as keys.
tl::expected<Json, Error> rows(Store& s, const std::string& sql, const std::vector<std::string>& names,
                               const std::function<void(Statement&)>& bind = {}) {
  auto q = s.db().prepare(sql);
  if (!q) return tl::unexpected(q.error());
  if (bind) bind(*q);
  Json out = Json::array();
  for (;;) {
    auto row = q->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    Json o = Json::object();
    for (size_t i = 0; i < names.size(); ++i) {
      int c = static_cast<int>(i);
      switch (q->type(c)) {
        case ColumnType::null: o[names[i]] = nullptr; break;
        case ColumnType::integer: o[names[i]] = q->int64(c); break;
        case ColumnType::real: o[names[i]] = q->real(c); break;
        default: o[names[i]] = q->text(c);
      }
    }
    out.push_back(std::move(o));
  }
  return out;
}

tl::expected<certs::Chain, Error> chain_of(const Json& attempt) {
  certs::Chain chain;
  if (!attempt.contains("chain") || !attempt["chain"].is_array()) return chain;
  for (const auto& c : attempt["chain"]) {
    if (!c.is_string()) return tl::unexpected(Error("a chain entry is not a string"));
    auto der = certs::unbase64(c.get<std::string>());
    if (!der) return tl::unexpected(der.error());
    auto x = certs::from_der(*der);
    if (!x) return tl::unexpected(x.error());
    chain.certs.push_back(tls::X509Ref::adopt(std::move(*x)));
  }
  return chain;
}

// From a scan record: the control's chain and the forged test chain.
tl::expected<std::pair<certs::Chain, certs::Chain>, Error> chains_of(const Json& record, const std::string& forged_sha) {
  const Json* control = nullptr;
  const Json* forged = nullptr;
  if (!record.contains("attempts") || !record["attempts"].is_array())
    return tl::unexpected(Error("the record has no attempts"));
  for (const auto& a : record["attempts"]) {  // by reference: the pointers outlive the loop
    auto role = a.value("role", "");
    if ((role == "control" || role == "control-recheck") && a.value("ok", false)) control = &a;
    if (role == "test" && !forged && a.contains("leaf") && a["leaf"].is_object() &&
        a["leaf"].value("sha256", "") == forged_sha)
      forged = &a;
  }
  if (!control || !forged) return tl::unexpected(Error("the record has no answered control and forged test"));
  auto real = chain_of(*control);
  if (!real) return tl::unexpected(real.error());
  auto fake = chain_of(*forged);
  if (!fake) return tl::unexpected(fake.error());
  if (real->certs.empty() || fake->certs.empty()) return tl::unexpected(Error("a chain is empty"));
  return std::make_pair(std::move(*real), std::move(*fake));
}

}  // namespace

tl::expected<Json, Error> overview(Store& s) {
  Json o = Json::object();
  for (const char* t : {"runs", "certificates", "events"}) {
    auto n = s.count(t);
    if (!n) return tl::unexpected(n.error());
    o[t] = *n;
  }
  // From the summary: counting a million records would take longer than the rest of the page.
  auto records = rows(s, "SELECT coalesce(sum(records), 0) FROM run_stats", {"records"});
  if (!records) return records;
  o["records"] = (*records)[0]["records"];
  auto v = rows(s, "SELECT DISTINCT vantage FROM runs ORDER BY 1", {"vantage"});
  if (!v) return v;
  o["vantages"] = Json::array();
  for (auto& r : *v) o["vantages"].push_back(r["vantage"]);
  auto se = rows(s, "SELECT DISTINCT series FROM runs WHERE series != '' ORDER BY 1", {"series"});
  if (!se) return se;
  o["series"] = Json::array();
  for (auto& r : *se) o["series"].push_back(r["series"]);
  auto span = rows(s, "SELECT min(started_ms), max(ended_ms) FROM runs", {"first_ms", "last_ms"});
  if (!span) return span;
  o["first_ms"] = (*span)[0]["first_ms"];
  o["last_ms"] = (*span)[0]["last_ms"];
  return o;
}

tl::expected<Json, Error> series_points(Store& s, const std::string& series) {
  auto points = rows(s,
                     "SELECT r.id, r.started_ms, r.vantage, r.series, coalesce(t.records,0), "
                     "coalesce(t.records,0) - coalesce(t.unreachable,0), coalesce(t.intercepted,0), r.status "
                     "FROM runs r LEFT JOIN run_stats t ON t.run_id = r.id "
                     "WHERE r.command = 'scan' AND (?1 = '' OR r.series = ?1) AND r.started_ms IS NOT NULL "
                     "ORDER BY r.started_ms",
                     {"run_id", "at_ms", "vantage", "series", "records", "judged", "intercepted", "status"},
                     [&](Statement& q) { q.bind(1, series); });
  if (!points) return points;
  for (auto& p : *points) {
    auto judged = p["judged"].get<int64_t>();
    p["share"] = judged ? static_cast<double>(p["intercepted"].get<int64_t>()) / static_cast<double>(judged) : 0.0;
  }
  return points;
}

tl::expected<Json, Error> event_list(Store& s, const std::string& series) {
  auto ev = s.events(series);
  if (!ev) return tl::unexpected(ev.error());
  Json out = Json::array();
  for (const auto& e : *ev)
    out.push_back({{"id", e.id},
                   {"run_id", e.run_id ? Json(*e.run_id) : Json(nullptr)},
                   {"series", e.series},
                   {"vantage", e.vantage},
                   {"at_ms", e.at_ms},
                   {"type", e.type},
                   {"subject", e.subject},
                   {"details", e.details}});
  return out;
}

tl::expected<Json, Error> hop_pairs(Store& s, int limit) {
  auto out = rows(s,
                  "SELECT hop_before, hop_after, count(*) FROM records WHERE kind = 'trace' AND hop_after IS NOT NULL "
                  "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT ?1",
                  {"before", "after", "count"}, [&](Statement& q) { q.bind(1, static_cast<int64_t>(limit)); });
  if (!out) return out;
  int64_t total = 0;
  for (auto& p : *out) total += p["count"].get<int64_t>();
  for (auto& p : *out) p["share"] = total ? static_cast<double>(p["count"].get<int64_t>()) / total : 0.0;
  return out;
}

tl::expected<Json, Error> domains(Store& s, int limit) {
  return rows(s,
              "SELECT sni, vantage, kind, records, intercepted, CAST(intercepted AS DOUBLE PRECISION) / records, last_ms "
              "FROM sni_stats ORDER BY intercepted DESC, records DESC, sni LIMIT ?1",
              {"sni", "vantage", "kind", "records", "intercepted", "share", "last_ms"},
              [&](Statement& q) { q.bind(1, static_cast<int64_t>(limit)); });
}

tl::expected<Json, Error> servers(Store& s, int limit) {
  return rows(s,
              "SELECT target, vantage, kind, records, intercepted, last_verdict, last_ms FROM target_stats "
              "ORDER BY intercepted DESC, target LIMIT ?1",
              {"target", "vantage", "kind", "records", "intercepted", "last_verdict", "last_ms"},
              [&](Statement& q) { q.bind(1, static_cast<int64_t>(limit)); });
}

tl::expected<Json, Error> issuers(Store& s) {
  return rows(s, "SELECT issuer, records, first_ms, last_ms FROM issuer_stats ORDER BY records DESC",
              {"issuer", "records", "first_ms", "last_ms"});
}

tl::expected<Json, Error> compare_vantages(Store& s, int list_limit) {
  auto per = rows(s,
                  "SELECT r.vantage, sum(t.records), sum(t.records - t.unreachable), sum(t.intercepted), count(DISTINCT r.id) "
                  "FROM runs r JOIN run_stats t ON t.run_id = r.id WHERE r.command = 'scan' GROUP BY r.vantage ORDER BY 1",
                  {"vantage", "records", "judged", "intercepted", "runs"});
  if (!per) return per;
  for (auto& v : *per) {
    auto judged = v["judged"].get<int64_t>();
    v["share"] = judged ? static_cast<double>(v["intercepted"].get<int64_t>()) / judged : 0.0;
    auto hosts = rows(s,
                      "SELECT count(*), coalesce(sum(CASE WHEN intercepted > 0 THEN 1 ELSE 0 END), 0) FROM target_stats "
                      "WHERE kind = 'scan' AND vantage = ?1",
                      {"hosts", "hosts_intercepted"}, [&](Statement& q) { q.bind(1, v["vantage"].get<std::string>()); });
    if (!hosts) return hosts;
    v["hosts"] = (*hosts)[0]["hosts"];
    v["hosts_intercepted"] = (*hosts)[0]["hosts_intercepted"];
    auto hops = rows(s,
                     "SELECT rec.injector_hop, count(*) FROM records rec JOIN runs r ON r.id = rec.run_id "
                     "WHERE rec.kind = 'trace' AND r.vantage = ?1 AND rec.injector_hop IS NOT NULL GROUP BY 1 ORDER BY 1",
                     {"hop", "traces"}, [&](Statement& q) { q.bind(1, v["vantage"].get<std::string>()); });
    if (!hops) return hops;
    v["injector_hops"] = *hops;
    auto pairs = rows(s,
                      "SELECT rec.hop_before, rec.hop_after, count(*) FROM records rec JOIN runs r ON r.id = rec.run_id "
                      "WHERE rec.kind = 'trace' AND r.vantage = ?1 AND rec.hop_after IS NOT NULL GROUP BY 1, 2 "
                      "ORDER BY 3 DESC LIMIT 10",
                      {"before", "after", "traces"}, [&](Statement& q) { q.bind(1, v["vantage"].get<std::string>()); });
    if (!pairs) return pairs;
    v["hop_pairs"] = *pairs;
  }
  Json differences = Json::array();
  for (const auto& a : *per)
    for (const auto& b : *per) {
      if (a["vantage"] == b["vantage"]) continue;
      auto only = rows(s,
                       "SELECT x.target FROM target_stats x JOIN target_stats y ON y.target = x.target AND y.kind = x.kind "
                       "WHERE x.kind = 'scan' AND x.vantage = ?1 AND y.vantage = ?2 AND x.intercepted > 0 AND "
                       "y.intercepted = 0 AND y.last_verdict != 'unreachable' ORDER BY x.target",
                       {"target"}, [&](Statement& q) {
                         q.bind(1, a["vantage"].get<std::string>()).bind(2, b["vantage"].get<std::string>());
                       });
      if (!only) return only;
      Json targets = Json::array();
      for (const auto& t : *only)
        if (static_cast<int>(targets.size()) < list_limit) targets.push_back(t["target"]);
      differences.push_back({{"intercepted_from", a["vantage"]},
                             {"not_from", b["vantage"]},
                             {"hosts", only->size()},
                             {"examples", std::move(targets)}});
    }
  return Json{{"vantages", *per}, {"intercepted_from_one_not_the_other", std::move(differences)}};
}

tl::expected<Json, Error> cert_pair(Store& s, int64_t record_id, const tls::TrustStore& trust,
                                    const certs::InterceptorRegistry& registry) {
  auto meta = rows(s, "SELECT kind, target, sni, verdict, leaf_sha256, run_id FROM records WHERE id = ?1",
                   {"kind", "target", "sni", "verdict", "leaf_sha256", "run_id"},
                   [&](Statement& q) { q.bind(1, record_id); });
  if (!meta) return meta;
  if (meta->empty()) return tl::unexpected(fmt::format("no record {}", record_id));
  auto m = (*meta)[0];
  if (m["kind"] != "scan" || !m["leaf_sha256"].is_string())
    return tl::unexpected(fmt::format("record {} is not an intercepted scan record", record_id));
  auto record = s.record(record_id);
  if (!record) return tl::unexpected(record.error());
  auto chains = chains_of(**record, m["leaf_sha256"].get<std::string>());
  if (!chains) return tl::unexpected(fmt::format("record {}: {}", record_id, chains.error()));
  auto d = certs::diff(chains->first, chains->second, trust, registry);
  Json out{{"record_id", record_id}, {"target", m["target"]}, {"sni", m["sni"]}, {"run_id", m["run_id"]}};
  out["diff"] = certs::to_json(d);
  out["real_pem"] = certs::to_pem(chains->first.certs.front().get());
  out["forged_pem"] = certs::to_pem(chains->second.certs.front().get());
  return out;
}

tl::expected<Json, Error> recipes(Store& s, const tls::TrustStore& trust, const certs::InterceptorRegistry& registry,
                                  int max_pairs) {
  auto picks = rows(s,
                    // leaf_sha256 is set only on intercepted records: the partial index covers this.
                    "SELECT min(id), leaf_sha256 FROM records WHERE leaf_sha256 IS NOT NULL AND kind = 'scan' "
                    "GROUP BY leaf_sha256 LIMIT ?1",
                    {"id", "leaf"}, [&](Statement& q) { q.bind(1, static_cast<int64_t>(max_pairs)); });
  if (!picks) return picks;
  std::vector<certs::Pair> pairs;
  for (const auto& p : *picks) {
    auto record = s.record(p["id"].get<int64_t>());
    if (!record || !*record) continue;
    auto chains = chains_of(**record, p["leaf"].get<std::string>());
    if (!chains) continue;  // a holds-root forgery without a control to compare
    pairs.push_back({(**record).value("ip", (**record).value("target", "")),
                     certs::diff(chains->first, chains->second, trust, registry)});
  }
  Json out = Json::array();
  for (const auto& r : certs::infer_recipes(pairs)) {
    auto j = certs::to_json(r);
    j["text"] = certs::to_text(r);
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace mw::store
