#include "monitor/changes.hpp"

#include <fmt/format.h>

#include <cmath>

namespace mw::monitor {
namespace {

nlohmann::ordered_json hit_json(const Intercepted& h) {
  return {{"target", h.target}, {"sni", h.sni}, {"issuer", h.issuer}, {"record_id", h.record_id}};
}

nlohmann::ordered_json shares(const RoundSummary& before, const RoundSummary& now) {
  return {{"share_before", before.share()},   {"share_now", now.share()},
          {"intercepted_before", before.intercepted}, {"intercepted_now", now.intercepted},
          {"judged_before", before.judged},   {"judged_now", now.judged},
          {"run_before", before.run_id},      {"run_now", now.run_id}};
}

bool beyond_chance(const RoundSummary& a, const RoundSummary& b, const Thresholds& t) {
  if (!a.judged || !b.judged) return false;
  double pa = a.share(), pb = b.share();
  if (std::fabs(pa - pb) < t.min_share_delta) return false;
  double pooled = static_cast<double>(a.intercepted + b.intercepted) / static_cast<double>(a.judged + b.judged);
  double se = std::sqrt(pooled * (1 - pooled) * (1.0 / a.judged + 1.0 / b.judged));
  return se == 0 || std::fabs(pa - pb) / se >= t.z;
}

}  // namespace

std::vector<Change> detect(History& h, const RoundSummary& now, const Thresholds& t) {
  std::vector<Change> out;
  std::set<std::string> issuers, triggers;
  for (const auto& hit : now.hits) {
    if (!hit.issuer.empty()) issuers.insert(hit.issuer);
    triggers.insert(hit.sni);
  }
  if (h.last && now.judged > 0) {
    const auto& before = *h.last;
    if (before.intercepted == 0 && now.intercepted > 0) {
      Change c{"interception-started", fmt::format("{} of {} intercepted", now.intercepted, now.judged), shares(before, now)};
      c.details["example"] = hit_json(now.hits.front());
      out.push_back(std::move(c));
    } else if (before.intercepted > 0 && now.intercepted == 0) {
      Change c{"interception-stopped", fmt::format("0 of {} intercepted, {} before", now.judged, before.intercepted),
               shares(before, now)};
      if (!before.hits.empty()) c.details["example"] = hit_json(before.hits.front());
      out.push_back(std::move(c));
    } else if (before.intercepted > 0 && beyond_chance(before, now, t)) {
      Change c{"share-moved", fmt::format("{:.1f} % -> {:.1f} %", 100 * before.share(), 100 * now.share()),
               shares(before, now)};
      if (!now.hits.empty()) c.details["example"] = hit_json(now.hits.front());
      out.push_back(std::move(c));
    }
  }
  // Names never seen in the series: one event each, with a record that shows it.
  auto firsts = [&](const char* type, const std::set<std::string>& names, const std::set<std::string>& known,
                    std::string Intercepted::*field) {
    for (const auto& name : names) {
      if (known.count(name)) continue;
      Change c{type, name};
      for (const auto& hit : now.hits)
        if (hit.*field == name) {
          c.details["example"] = hit_json(hit);
          break;
        }
      out.push_back(std::move(c));
    }
  };
  if (h.rounds > 0) {
    firsts("new-issuer", issuers, h.issuers, &Intercepted::issuer);
    firsts("new-trigger", triggers, h.triggers, &Intercepted::sni);
  }
  for (const auto& [target, pair] : now.hop_pair) {
    auto it = h.hop_pair.find(target);
    if (it != h.hop_pair.end() && it->second != pair)
      out.push_back({"device-moved", target, {{"target", target}, {"hops_before", it->second}, {"hops_now", pair}}});
    h.hop_pair[target] = pair;
  }
  h.issuers.insert(issuers.begin(), issuers.end());
  h.triggers.insert(triggers.begin(), triggers.end());
  if (now.judged > 0) h.last = now;  // a round that reached nothing says nothing about the device
  ++h.rounds;
  return out;
}

tl::expected<RoundSummary, store::Error> summarize_round(store::Store& s, int64_t scan_run,
                                                         std::optional<int64_t> trace_run) {
  RoundSummary r;
  r.run_id = scan_run;
  auto run = s.run(scan_run);
  if (!run) return tl::unexpected(run.error());
  if (!*run) return tl::unexpected(fmt::format("run {} is not in the store", scan_run));
  r.at_ms = (*run)->started_ms.value_or(0);
  r.records = (*run)->records;
  r.judged = (*run)->records - (*run)->unreachable;
  r.intercepted = (*run)->intercepted;
  auto q = s.db().prepare(
      "SELECT id, target, sni, coalesce(issuer, '') FROM records WHERE run_id = ?1 AND verdict = 'intercepted' "
      "ORDER BY id");
  if (!q) return tl::unexpected(q.error());
  q->bind(1, scan_run);
  for (;;) {
    auto row = q->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    r.hits.push_back({q->text(1), q->text(2), q->text(3), q->int64(0)});
  }
  if (trace_run) {
    auto t = s.db().prepare(
        "SELECT target, hop_before, hop_after FROM records WHERE run_id = ?1 AND kind = 'trace' AND hop_after IS NOT NULL");
    if (!t) return tl::unexpected(t.error());
    t->bind(1, *trace_run);
    for (;;) {
      auto row = t->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      r.hop_pair[t->text(0)] = t->text(1) + " > " + t->text(2);
    }
  }
  return r;
}

tl::expected<History, store::Error> history_of(store::Store& s, const std::string& series) {
  History h;
  auto runs = s.runs("scan", series);
  if (!runs) return tl::unexpected(runs.error());
  for (const auto& run : *runs) {
    auto r = summarize_round(s, run.id, std::nullopt);
    if (!r) return tl::unexpected(r.error());
    (void)detect(h, *r);
  }
  return h;
}

}  // namespace mw::monitor
