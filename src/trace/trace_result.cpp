#include "trace/trace_result.hpp"

#include "records/scan_record.hpp"
#include "verdict/verdict.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace mw::trace {

using Json = nlohmann::ordered_json;

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::time_exceeded: return "time-exceeded";
    case Outcome::unreachable: return "unreachable";
    case Outcome::tls: return "tls";
    case Outcome::alert: return "tls-alert";
    case Outcome::rst: return "rst";
    case Outcome::fin: return "fin";
    case Outcome::other_data: return "other-data";
    case Outcome::silence: return "silence";
    case Outcome::connect_failed: return "connect-failed";
  }
  return "silence";
}

bool is_answer(Outcome o) {
  return o == Outcome::tls || o == Outcome::alert || o == Outcome::rst || o == Outcome::fin ||
         o == Outcome::other_data || o == Outcome::unreachable;
}

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::before_server: return "before-server";
    case Verdict::at_server: return "at-server";
    case Verdict::not_observed: return "not-observed";
    case Verdict::inconsistent: return "inconsistent";
    case Verdict::unreachable: return "unreachable";
  }
  return "unreachable";
}

const ProbeResult* SniTrace::first_answer() const {
  const ProbeResult* best = nullptr;
  for (const auto& p : probes)
    if (is_answer(p.outcome) && (!best || p.ttl < best->ttl)) best = &p;
  return best;
}

RunJudgement judge_run(SniTrace& trigger, const SniTrace& control) {
  RunJudgement j;
  const ProbeResult* control_answer = control.first_answer();
  // The real chain: the control's lowest-TTL TLS answer.
  const tls::Observation* real = nullptr;
  int real_ttl = 0;
  for (const auto& p : control.probes)
    if (p.outcome == Outcome::tls && p.tls && !p.tls->chain.empty() && (!real || p.ttl < real_ttl)) {
      real = &*p.tls;
      real_ttl = p.ttl;
    }
  tls::Observation no_control;
  no_control.error = tls::ProbeError::connect_unreachable;
  for (auto& p : trigger.probes) {
    p.forged = false;
    if (p.outcome != Outcome::tls || !p.tls) continue;
    auto c = verdict::compare(*p.tls, real ? *real : no_control);
    p.forged = c.verdict == verdict::Verdict::intercepted;
    if (p.forged && (!j.injector_hop || p.ttl < *j.injector_hop)) j.injector_hop = p.ttl;
  }
  if (control_answer) j.server_hop = control_answer->ttl;
  const ProbeResult* trigger_answer = trigger.first_answer();
  if (!trigger_answer && !control_answer) {
    j.verdict = Verdict::unreachable;
    j.reasons.push_back("no answer to either SNI at any TTL");
    return j;
  }
  if (!j.injector_hop) {
    j.verdict = Verdict::not_observed;
    if (!trigger_answer) {
      j.reasons.push_back("the trigger SNI got no answer at any TTL");
    } else {
      std::string what = trigger_answer->outcome == Outcome::tls ? "the real chain" : to_string(trigger_answer->outcome);
      j.reasons.push_back(fmt::format("trigger answered by {} at TTL {}", what, trigger_answer->ttl));
      if (j.server_hop && trigger_answer->ttl < *j.server_hop)
        j.reasons.push_back(fmt::format("an answer before the server (hop {}): injected, but not a forged chain",
                                        *j.server_hop));
    }
    return j;
  }
  int k = *j.injector_hop;
  if (trigger_answer->ttl < k) {
    j.verdict = Verdict::inconsistent;
    j.reasons.push_back(fmt::format("trigger answered ({}) at TTL {}, before the forged chain at TTL {}",
                                    to_string(trigger_answer->outcome), trigger_answer->ttl, k));
    return j;
  }
  for (const auto& p : trigger.probes)
    if (p.ttl > k && p.outcome == Outcome::tls && !p.forged) {
      j.verdict = Verdict::inconsistent;
      j.reasons.push_back(fmt::format("forged chain at TTL {} but the real one at TTL {}", k, p.ttl));
      return j;
    }
  if (!j.server_hop) {
    j.verdict = Verdict::inconsistent;
    j.reasons.push_back("the control SNI got no answer: the server's distance is unknown");
    return j;
  }
  if (k < *j.server_hop) {
    j.verdict = Verdict::before_server;
    j.reasons.push_back(fmt::format("forged chain from TTL {}, the server answers from TTL {}", k, *j.server_hop));
  } else if (k == *j.server_hop) {
    j.verdict = Verdict::at_server;
    j.reasons.push_back(fmt::format("forged chain first at the server's own distance (TTL {})", k));
  } else {
    j.verdict = Verdict::inconsistent;
    j.reasons.push_back(fmt::format("forged chain at TTL {}, beyond the server's distance {}", k, *j.server_hop));
  }
  return j;
}

std::optional<Settled> settle(const std::vector<Run>& runs, int required, bool final) {
  if (runs.empty()) return std::nullopt;
  // The judgement most runs share (earliest wins a tie), and how many share it.
  const RunJudgement* best = nullptr;
  int best_count = 0;
  for (const auto& r : runs) {
    int n = static_cast<int>(std::count_if(runs.begin(), runs.end(),
                                           [&](const Run& o) { return o.judgement == r.judgement; }));
    if (n > best_count) {
      best = &r.judgement;
      best_count = n;
    }
  }
  if (best_count >= required && best->verdict != Verdict::inconsistent) return Settled{*best, best_count};
  if (!final) return std::nullopt;
  Settled s{*best, best_count};
  if (best_count < static_cast<int>(runs.size())) {
    s.judgement.verdict = Verdict::inconsistent;
    s.judgement.reasons.push_back(
        fmt::format("runs disagree: the most common result came in {} of {} runs", best_count, runs.size()));
  }
  return s;
}

std::map<int, net::IpAddress> hop_addresses(const TargetTrace& t) {
  std::map<int, net::IpAddress> hops;
  for (bool control_first : {true, false})
    for (const auto& run : t.runs) {
      if (!(run.judgement == t.settled.judgement) && t.settled.agreeing > 0) continue;
      const SniTrace& trace = control_first ? run.control : run.trigger;
      for (const auto& p : trace.probes)
        if (p.router && p.outcome == Outcome::time_exceeded) hops.emplace(p.ttl, *p.router);
    }
  return hops;
}

namespace {

Json optional_int(const std::optional<int>& v) { return v ? Json(*v) : Json(nullptr); }

double round3(double v) { return std::round(v * 1000) / 1000; }

Json asn_json(const net::AsnLookup* asn, const net::IpAddress& addr, Json j) {
  if (!asn || !asn->enabled()) return j;
  net::AsnInfo info = asn->lookup(addr);
  j["asn"] = info.asn ? Json(*info.asn) : Json(nullptr);
  j["as_org"] = info.as_org.empty() ? Json(nullptr) : Json(info.as_org);
  j["country"] = info.country.empty() ? Json(nullptr) : Json(info.country);
  return j;
}

Json probe_json(const ProbeResult& p) {
  Json j = {{"ttl", p.ttl}, {"outcome", to_string(p.outcome)}};
  if (p.attempt > 1) j["attempt"] = p.attempt;
  if (p.router) j["from"] = p.router->to_string();
  if (p.rtt_ms >= 0) j["rtt_ms"] = round3(p.rtt_ms);
  if (p.quoted_ttl >= 0) j["quoted_ttl"] = p.quoted_ttl;
  if (p.matched_by_sequence) j["matched_by"] = "sequence";
  if (!p.changes.empty()) {
    Json changes = Json::object();
    for (const auto& c : p.changes) changes[c.field] = {{"sent", c.sent}, {"quoted", c.quoted}};
    j["rewritten"] = std::move(changes);
  }
  if (p.answer_ip_ttl >= 0) j["answer_ip_ttl"] = p.answer_ip_ttl;
  if (!p.answer_ip_ids.empty()) j["answer_ip_ids"] = p.answer_ip_ids;
  if (p.outcome == Outcome::tls && p.tls) {
    j["forged"] = p.forged;
    j["tls_version"] = p.tls->tls_version;
    j["leaf"] = records::leaf_summary(*p.tls);
    if (!p.tls->trust.verify_error.empty() || p.tls->trust.trusted) j["trusted"] = p.tls->trust.trusted;
    if (p.tls->interceptor) j["interceptor"] = p.tls->interceptor->name;
  }
  if (!p.detail.empty()) j["detail"] = p.detail;
  return j;
}

Json trace_json(const SniTrace& s) {
  Json j;
  j["sni"] = s.sni.empty() ? Json(nullptr) : Json(s.sni);
  const ProbeResult* a = s.first_answer();
  j["answer_ttl"] = a ? Json(a->ttl) : Json(nullptr);
  j["answer"] = a ? Json(to_string(a->outcome)) : Json(nullptr);
  if (a && a->outcome == Outcome::tls) {
    j["forged"] = a->forged;
    j["leaf"] = a->tls ? records::leaf_summary(*a->tls) : Json(nullptr);
  }
  if (a && a->answer_ip_ttl >= 0) j["answer_ip_ttl"] = a->answer_ip_ttl;
  if (s.synack_ttl >= 0) j["synack_ip_ttl"] = s.synack_ttl;
  Json probes = Json::array();
  std::vector<const ProbeResult*> sorted;
  for (const auto& p : s.probes) sorted.push_back(&p);
  std::stable_sort(sorted.begin(), sorted.end(), [](auto* x, auto* y) {
    return x->ttl != y->ttl ? x->ttl < y->ttl : x->attempt < y->attempt;
  });
  for (const auto* p : sorted) probes.push_back(probe_json(*p));
  j["probes"] = std::move(probes);
  return j;
}

}  // namespace

Json to_json(const TargetTrace& t, const net::AsnLookup* asn) {
  const RunJudgement& v = t.settled.judgement;
  auto hops = hop_addresses(t);
  auto address_at = [&](int ttl) -> Json {
    if (ttl < 1) return nullptr;
    auto it = hops.find(ttl);
    return it == hops.end() ? Json("*") : Json(it->second.to_string());
  };
  Json j;
  j["schema"] = kTraceSchema;
  j["target"] = t.target.to_string();
  j["trigger_sni"] = t.trigger_sni;
  j["control_sni"] = t.control_sni.empty() ? Json(nullptr) : Json(t.control_sni);
  j["verdict"] = to_string(v.verdict);
  j["injector_hop"] = optional_int(v.injector_hop);
  bool located = v.injector_hop && (v.verdict == Verdict::before_server || v.verdict == Verdict::at_server);
  j["injector_before"] = located ? address_at(*v.injector_hop - 1) : Json(nullptr);
  j["injector_after"] = !located                          ? Json(nullptr)
                        : v.verdict == Verdict::at_server ? Json(t.target.ip.to_string())
                                                          : address_at(*v.injector_hop);
  j["server_hop"] = optional_int(v.server_hop);
  j["hops_before_server"] = located && v.server_hop ? Json(*v.server_hop - *v.injector_hop) : Json(nullptr);
  j["reasons"] = v.reasons;
  j["runs"] = t.runs.size();
  j["agreement"] = t.runs.empty() ? 0.0 : round3(static_cast<double>(t.settled.agreeing) / t.runs.size());
  if (t.runs.size() > 1) {
    Json each = Json::array();
    for (const auto& r : t.runs)
      each.push_back({{"verdict", to_string(r.judgement.verdict)},
                      {"injector_hop", optional_int(r.judgement.injector_hop)},
                      {"server_hop", optional_int(r.judgement.server_hop)}});
    j["run_results"] = std::move(each);
  }
  // The path: a row per TTL up to the server (or the last TTL probed).
  int last = v.server_hop.value_or(0);
  for (const auto& r : t.runs)
    for (const SniTrace* s : {&r.trigger, &r.control})
      if (!v.server_hop)
        for (const auto& p : s->probes) last = std::max(last, p.ttl);
  Json path = Json::array();
  for (int ttl = 1; ttl <= last; ++ttl) {
    Json hop = {{"ttl", ttl}};
    double best_rtt = -1;
    for (const auto& r : t.runs)
      for (const SniTrace* s : {&r.control, &r.trigger})
        for (const auto& p : s->probes)
          if (p.ttl == ttl && p.rtt_ms >= 0 && (p.outcome == Outcome::time_exceeded || p.outcome == Outcome::tls) &&
              (best_rtt < 0 || p.rtt_ms < best_rtt))
            best_rtt = p.rtt_ms;
    if (v.server_hop && ttl == *v.server_hop) {
      hop["address"] = t.target.ip.to_string();
      hop["server"] = true;
      hop = asn_json(asn, t.target.ip, std::move(hop));
    } else if (auto it = hops.find(ttl); it != hops.end()) {
      hop["address"] = it->second.to_string();
      hop = asn_json(asn, it->second, std::move(hop));
    } else {
      hop["address"] = "*";
    }
    hop["rtt_ms"] = best_rtt >= 0 ? Json(round3(best_rtt)) : Json(nullptr);
    if (located && ttl == *v.injector_hop) hop["injector_before_this_hop"] = true;
    path.push_back(std::move(hop));
  }
  j["hops"] = std::move(path);
  if (!t.runs.empty()) {
    // The probes of the last run that agrees with the verdict.
    const Run* shown = &t.runs.back();
    for (const auto& r : t.runs)
      if (r.judgement == v) shown = &r;
    j["trigger"] = trace_json(shown->trigger);
    j["control"] = trace_json(shown->control);
  }
  j["started_unix_ms"] = t.started_unix_ms;
  return j;
}

void TraceSummary::add(const nlohmann::json& r) {
  if (!r.is_object() || r.value("schema", "") != kTraceSchema) return;
  ++targets;
  std::string v = r.value("verdict", "");
  ++by_verdict[v];
  if (v != "before-server" && v != "at-server") return;
  if (!r["injector_hop"].is_number_integer()) return;
  int k = r["injector_hop"].get<int>();
  ++injector_hops[k];
  if (r["server_hop"].is_number_integer()) ++hops_before_server[r["server_hop"].get<int>() - k];
  auto text = [&](const char* key) { return r[key].is_string() ? r[key].get<std::string>() : std::string("*"); };
  ++hop_pairs[{text("injector_before"), text("injector_after")}];
}

std::string TraceSummary::render(size_t top_pairs) const {
  auto pct = [](uint64_t n, uint64_t of) { return of ? 100.0 * static_cast<double>(n) / static_cast<double>(of) : 0.0; };
  std::string out = fmt::format("trace: {} targets", targets);
  for (const auto& [v, n] : by_verdict) out += fmt::format(", {} {}", v, n);
  out += "\n";
  uint64_t located = 0;
  for (const auto& [k, n] : injector_hops) located += n;
  if (located == 0) return out + "no injector located\n";
  uint64_t before = by_verdict.count("before-server") ? by_verdict.at("before-server") : 0;
  out += fmt::format("injected before the server: {} of {} located targets ({:.1f} %)\n", before, located,
                     pct(before, located));
  out += "hops before the server:";
  for (const auto& [h, n] : hops_before_server) out += fmt::format(" {}: {} ({:.1f} %);", h, n, pct(n, located));
  out.back() = '\n';
  std::vector<std::pair<uint64_t, std::pair<std::string, std::string>>> pairs;
  for (const auto& [p, n] : hop_pairs) pairs.push_back({n, p});
  std::stable_sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  out += "injector between (last hop before it -> first hop after):\n";
  for (size_t i = 0; i < pairs.size() && i < top_pairs; ++i)
    out += fmt::format("  {} -> {}: {} ({:.1f} %)\n", pairs[i].second.first, pairs[i].second.second, pairs[i].first,
                       pct(pairs[i].first, located));
  return out;
}

}  // namespace mw::trace
