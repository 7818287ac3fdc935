#include "fingerprint/expectations.hpp"
#include "io/json_member.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace mw::fingerprint {
namespace {

tl::expected<Expectation, std::string> read_rule(const nlohmann::json& r, const std::string& where) {
  Expectation e;
  e.name = io::string_member(r, "name");
  bool any = false;
  for (auto [field, out] : {std::pair{"ja3", &e.ja3}, std::pair{"ja4", &e.ja4}, std::pair{"tlsfp", &e.tlsfp}}) {
    if (!r.contains(field)) continue;
    const auto& v = r[field];
    if (v.is_string()) {
      out->push_back(v.get<std::string>());
    } else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& x) { return x.is_string(); })) {
      for (const auto& x : v) out->push_back(x.get<std::string>());
    } else {
      return tl::unexpected(fmt::format("{}: \"{}\" must be a string or an array of strings", where, field));
    }
    any = any || !out->empty();
  }
  if (!any) return tl::unexpected(where + ": lists none of ja3, ja4, tlsfp");
  return e;
}

bool met(const Expectation& e, const ClientPrints& p, std::vector<Mismatch>& out) {
  bool ok = true;
  auto one = [&](const char* field, const std::vector<std::string>& allowed, const std::string& got) {
    if (allowed.empty() || std::find(allowed.begin(), allowed.end(), got) != allowed.end()) return;
    out.push_back({e.name, field, got});
    ok = false;
  };
  one("ja3", e.ja3, p.ja3);
  one("ja4", e.ja4, p.ja4);
  one("tlsfp", e.tlsfp, p.tlsfp);
  return ok;
}

}  // namespace

tl::expected<Expectations, std::string> Expectations::from_json(std::string_view text, std::string_view origin) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return tl::unexpected(fmt::format("{}: not a JSON object", origin));
  Expectations x;
  if (j.contains("sources")) {
    if (!j["sources"].is_array()) return tl::unexpected(fmt::format("{}: \"sources\" must be an array", origin));
    size_t n = 0;
    for (const auto& r : j["sources"]) {
      std::string where = fmt::format("{}: sources #{}", origin, ++n);
      if (!r.is_object() || !r.contains("cidr") || !r["cidr"].is_string()) return tl::unexpected(where + ": needs a \"cidr\"");
      auto prefix = net::Prefix::parse(r["cidr"].get<std::string>());
      if (!prefix) return tl::unexpected(where + ": " + prefix.error());
      auto e = read_rule(r, where);
      if (!e) return tl::unexpected(e.error());
      if (e->name.empty()) e->name = prefix->to_string();
      x.by_source_.push_back({*prefix, std::move(*e)});
    }
  }
  if (j.contains("user_agents")) {
    if (!j["user_agents"].is_array()) return tl::unexpected(fmt::format("{}: \"user_agents\" must be an array", origin));
    size_t n = 0;
    for (const auto& r : j["user_agents"]) {
      std::string where = fmt::format("{}: user_agents #{}", origin, ++n);
      if (!r.is_object() || !r.contains("contains") || !r["contains"].is_string() || r["contains"].get<std::string>().empty())
        return tl::unexpected(where + ": needs a non-empty \"contains\"");
      auto e = read_rule(r, where);
      if (!e) return tl::unexpected(e.error());
      if (e->name.empty()) e->name = "User-Agent ~ " + r["contains"].get<std::string>();
      x.by_user_agent_.push_back({r["contains"].get<std::string>(), std::move(*e)});
    }
  }
  if (x.by_source_.empty() && x.by_user_agent_.empty())
    return tl::unexpected(fmt::format("{}: no \"sources\" or \"user_agents\" rules", origin));
  return x;
}

tl::expected<Expectations, std::string> Expectations::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return tl::unexpected(path + ": cannot open file");
  std::stringstream text;
  text << in.rdbuf();
  return from_json(text.str(), path);
}

std::vector<Mismatch> Expectations::check(const net::IpAddress& source, const std::string& user_agent,
                                          const ClientPrints& p) const {
  std::vector<Mismatch> out;
  for (const auto& [prefix, e] : by_source_)
    if (prefix.contains(source)) met(e, p, out);
  if (!user_agent.empty())
    for (const auto& [needle, e] : by_user_agent_)
      if (user_agent.find(needle) != std::string::npos) met(e, p, out);
  return out;
}

}  // namespace mw::fingerprint
