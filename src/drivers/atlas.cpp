#include "drivers/atlas.hpp"

#include "certs/x509.hpp"
#include "io/json_member.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

namespace mw::drivers {
namespace {

using AtlasJson = nlohmann::json;

tl::expected<std::vector<AtlasJson>, std::string> json_items(std::string_view text, const std::string& origin) {
  std::vector<AtlasJson> items;
  auto whole = AtlasJson::parse(text, nullptr, false);
  if (!whole.is_discarded()) {
    if (whole.is_array()) {
      for (auto& j : whole) items.push_back(std::move(j));
    } else if (whole.is_object() && whole.contains("results") && whole["results"].is_array()) {
      for (auto& j : whole["results"]) items.push_back(std::move(j));
    } else {
      items.push_back(std::move(whole));
    }
    return items;
  }
  size_t start = 0, line = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    ++line;
    auto piece = text.substr(start, end - start);
    start = end + 1;
    if (piece.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto j = AtlasJson::parse(piece, nullptr, false);
    if (j.is_discarded()) return tl::unexpected(fmt::format("{}: line {}: not JSON", origin, line));
    items.push_back(std::move(j));
  }
  return items;
}

int64_t number(const AtlasJson& j, const char* key, int64_t fallback = 0) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (it->is_number()) return io::int64_member(j, key).value_or(fallback);
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (const std::exception&) {
    }
  }
  return fallback;
}

}  // namespace

tl::expected<std::vector<AtlasResult>, std::string> parse_atlas_sslcert(std::string_view text,
                                                                        const std::string& origin,
                                                                        const std::string& sni) {
  auto items = json_items(text, origin);
  if (!items) return tl::unexpected(items.error());
  std::vector<AtlasResult> out;
  for (size_t i = 0; i < items->size(); ++i) {
    const auto& j = (*items)[i];
    auto where = [&](const std::string& what) { return fmt::format("{}: result {}: {}", origin, i + 1, what); };
    if (!j.is_object()) return tl::unexpected(where("not an object"));
    if (io::string_member(j, "type") != "sslcert")
      return tl::unexpected(where("type is not \"sslcert\" (an Atlas TLS certificate result)"));
    AtlasResult r;
    r.probe = number(j, "prb_id", -1);
    r.measurement = number(j, "msm_id", -1);
    if (r.probe < 0) return tl::unexpected(where("no prb_id"));
    auto addr = net::IpAddress::parse(io::string_member(j, "dst_addr"));
    if (!addr) return tl::unexpected(where("dst_addr: " + addr.error()));
    auto port = number(j, "dst_port", 443);
    if (port < 1 || port > 65535) return tl::unexpected(where("dst_port out of range"));
    r.target = {*addr, static_cast<uint16_t>(port)};
    r.dst_name = io::string_member(j, "dst_name");
    auto& o = r.observation;
    o.sni = sni;
    // Unix seconds; past year 9999 (or negative) it is no time, and would overflow in milliseconds.
    auto timestamp = number(j, "timestamp");
    if (timestamp < 0 || timestamp > 253402300799) return tl::unexpected(where("timestamp out of range"));
    o.started_unix_ms = timestamp * 1000;
    if (auto ttc = j.find("ttc"); ttc != j.end() && ttc->is_number()) o.connect_ms = ttc->get<double>();
    if (auto rt = j.find("rt"); rt != j.end() && rt->is_number()) o.handshake_ms = rt->get<double>();
    if (auto ver = j.find("ver"); ver != j.end() && ver->is_string()) o.tls_version = "TLSv" + ver->get<std::string>();
    if (auto c = j.find("server_cipher"); c != j.end() && c->is_string()) o.cipher = c->get<std::string>();
    if (auto alert = j.find("alert"); alert != j.end() && alert->is_object()) {
      o.error = tls::ProbeError::tls_alert;
      o.alert = static_cast<int>(number(*alert, "description", -1));
      o.error_detail = "Atlas: TLS alert";
    } else if (auto err = j.find("err"); err != j.end()) {
      std::string e = err->is_string() ? err->get<std::string>() : err->dump();
      o.error = e.find("timeout") != std::string::npos    ? tls::ProbeError::handshake_timeout
                : e.find("refused") != std::string::npos  ? tls::ProbeError::connect_refused
                : e.find("reset") != std::string::npos    ? tls::ProbeError::reset
                                                          : tls::ProbeError::protocol_error;
      o.error_detail = "Atlas: " + e;
    } else {
      auto certs = j.find("cert");
      if (certs == j.end() || !certs->is_array() || certs->empty())
        return tl::unexpected(where("neither a cert chain nor err/alert"));
      for (const auto& pem : *certs) {
        if (!pem.is_string()) return tl::unexpected(where("a cert entry is not a string"));
        auto parsed = certs::parse_pem(pem.get<std::string>());
        if (!parsed || parsed->size() != 1) return tl::unexpected(where("a cert entry is not one PEM certificate"));
        o.chain.push_back(certs::to_der(parsed->front().get()));
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

tl::expected<std::map<int64_t, AtlasProbe>, std::string> parse_atlas_probes(std::string_view text,
                                                                           const std::string& origin) {
  auto items = json_items(text, origin);
  if (!items) return tl::unexpected(items.error());
  std::map<int64_t, AtlasProbe> out;
  for (const auto& p : *items) {
    if (!p.is_object() || !p.contains("id")) return tl::unexpected(origin + ": a probe without \"id\"");
    AtlasProbe probe;
    if (auto asn = number(p, "asn_v4", -1); asn > 0) probe.asn = asn;
    if (auto cc = p.find("country_code"); cc != p.end() && cc->is_string()) probe.country = cc->get<std::string>();
    out[number(p, "id")] = probe;
  }
  return out;
}

std::string atlas_vantage(int64_t probe, const std::map<int64_t, AtlasProbe>& probes) {
  std::string v = fmt::format("atlas-{}", probe);
  if (auto it = probes.find(probe); it != probes.end()) {
    if (it->second.asn) v += fmt::format("-AS{}", *it->second.asn);
    if (!it->second.country.empty()) v += "-" + it->second.country;
  }
  return v;
}

std::vector<AtlasRecord> judge_atlas(std::vector<AtlasResult> tests, std::vector<AtlasResult> controls,
                                     const std::string& sni, const std::string& control_sni,
                                     const tls::TrustStore& trust, const certs::InterceptorRegistry& registry,
                                     const std::map<int64_t, AtlasProbe>& probes) {
  for (auto& r : tests) tls::assess(r.observation, trust, registry);
  for (auto& r : controls) tls::assess(r.observation, trust, registry);
  std::vector<AtlasRecord> out;
  for (auto& t : tests) {
    const AtlasResult* control = nullptr;
    for (const auto& c : controls)
      if (c.probe == t.probe && c.target == t.target &&
          (!control || std::llabs(c.observation.started_unix_ms - t.observation.started_unix_ms) <
                           std::llabs(control->observation.started_unix_ms - t.observation.started_unix_ms)))
        control = &c;
    records::ScanRecord rec;
    rec.target = t.target;
    rec.sni = sni;
    rec.control_sni = control_sni;
    if (control) {
      rec.attempts.push_back({"control", control->observation});
      rec.result = verdict::compare(t.observation, control->observation);
    } else {
      rec.result.verdict = verdict::Verdict::unreachable;
      rec.result.reasons.push_back("no control result from this probe for this target");
    }
    rec.attempts.push_back({"test", t.observation});
    rec.intercepted_attempts = rec.result.verdict == verdict::Verdict::intercepted ? 1 : 0;
    auto json = records::to_json(rec);
    json["atlas"] = {{"probe", t.probe},
                     {"test_measurement", t.measurement},
                     {"control_measurement", control ? AtlasJson(control->measurement) : AtlasJson(nullptr)},
                     {"dst_name", t.dst_name}};
    if (auto it = probes.find(t.probe); it != probes.end()) {
      json["atlas"]["asn"] = it->second.asn ? AtlasJson(*it->second.asn) : AtlasJson(nullptr);
      json["atlas"]["country"] = it->second.country;
    }
    out.push_back({t.probe, atlas_vantage(t.probe, probes), std::move(json)});
  }
  return out;
}

nlohmann::ordered_json atlas_definitions(const std::vector<net::Endpoint>& targets, const std::string& sni,
                                         const std::string& control_sni, const AtlasSelection& probes) {
  nlohmann::ordered_json defs = nlohmann::ordered_json::array();
  for (const auto& t : targets)
    for (const auto& [name, role] : {std::pair{sni, "test"}, std::pair{control_sni, "control"}})
      defs.push_back({{"type", "sslcert"},
                      {"target", t.ip.to_string()},
                      {"af", t.ip.family == AF_INET6 ? 6 : 4},
                      {"port", t.port},
                      {"hostname", name},
                      {"description", fmt::format("mitmwatch {} {} {}", role, name, t.to_string())},
                      {"tags", {"mitmwatch", std::string("mitmwatch-") + role}}});
  return {{"definitions", defs},
          {"probes", {{{"requested", probes.requested}, {"type", probes.type}, {"value", probes.value}}}},
          {"is_oneoff", true}};
}

}  // namespace mw::drivers
