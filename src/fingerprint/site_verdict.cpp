#include "fingerprint/site_verdict.hpp"
#include "io/json_member.hpp"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

namespace mw {
std::string_view embedded_browser_fingerprints_json();
}

namespace mw::fingerprint {
namespace {

// JA4_a is 10 characters: transport, version (2), d/i, ciphers (2), extensions (2), ALPN (2).
bool two_digits(std::string_view s, int& out) {
  if (s.size() != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return false;
  out = (s[0] - '0') * 10 + (s[1] - '0');
  return true;
}

tl::expected<std::pair<int, int>, std::string> range_of(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 || !j[key][0].is_number_integer() ||
      !j[key][1].is_number_integer() || j[key][0].get<int>() > j[key][1].get<int>())
    return tl::unexpected(fmt::format("\"{}\" must be [low, high]", key));
  return std::make_pair(j[key][0].get<int>(), j[key][1].get<int>());
}

tl::expected<std::vector<std::string>, std::string> strings_of(const nlohmann::json& j, const char* key) {
  std::vector<std::string> out;
  if (!j.contains(key) || !j[key].is_array() || j[key].empty())
    return tl::unexpected(fmt::format("\"{}\" must be a non-empty array of strings", key));
  for (const auto& e : j[key]) {
    if (!e.is_string() || e.get<std::string>().empty())
      return tl::unexpected(fmt::format("\"{}\" must be a non-empty array of strings", key));
    out.push_back(e.get<std::string>());
  }
  return out;
}

// A quoted string of RFC 8941: backslash and double quote escaped, printable ASCII only.
std::string sf_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return out + "\"";
}

}  // namespace

bool HelloShape::fits(std::string_view ja4) const {
  if (ja4.size() < 24 || ja4[10] != '_' || ja4[23] != '_') return false;
  int ciphers = 0, extensions = 0;
  if (ja4[0] != transport || ja4.substr(1, 2) != version || !two_digits(ja4.substr(4, 2), ciphers) ||
      !two_digits(ja4.substr(6, 2), extensions))
    return false;
  if (ciphers < min_ciphers || ciphers > max_ciphers || extensions < min_extensions || extensions > max_extensions)
    return false;
  auto alpn_code = ja4.substr(8, 2);
  if (std::find(alpn.begin(), alpn.end(), alpn_code) == alpn.end()) return false;
  auto cipher_hash = ja4.substr(11, 12);
  return std::find(cipher_hashes.begin(), cipher_hashes.end(), cipher_hash) != cipher_hashes.end();
}

tl::expected<BrowserTable, std::string> BrowserTable::from_json(std::string_view text, std::string_view origin) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return tl::unexpected(fmt::format("{}: not JSON", origin));
  if (!j.is_object() || !j.contains("families") || !j["families"].is_array())
    return tl::unexpected(fmt::format("{}: needs an object with a \"families\" array", origin));
  BrowserTable t;
  for (const auto& f : j["families"]) {
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string())
      return tl::unexpected(fmt::format("{}: family #{} needs a \"name\"", origin, t.families_.size() + 1));
    BrowserFamily family;
    family.name = f["name"].get<std::string>();
    auto where = [&](const std::string& what) { return fmt::format("{}: family '{}': {}", origin, family.name, what); };
    auto uas = strings_of(f, "user_agents");
    if (!uas) return tl::unexpected(where(uas.error()));
    family.user_agents = std::move(*uas);
    if (!f.contains("shapes") || !f["shapes"].is_array() || f["shapes"].empty())
      return tl::unexpected(where("needs a non-empty \"shapes\" array"));
    for (const auto& s : f["shapes"]) {
      HelloShape shape;
      if (!s.is_object()) return tl::unexpected(where("a shape is not an object"));
      auto transport = io::string_member(s, "transport");
      if (transport != "t" && transport != "q" && transport != "d")
        return tl::unexpected(where("\"transport\" must be \"t\", \"q\" or \"d\""));
      shape.transport = transport[0];
      shape.version = io::string_member(s, "version");
      if (shape.version.size() != 2) return tl::unexpected(where("\"version\" must be JA4's two characters (\"13\")"));
      auto ciphers = range_of(s, "ciphers");
      if (!ciphers) return tl::unexpected(where(ciphers.error()));
      auto extensions = range_of(s, "extensions");
      if (!extensions) return tl::unexpected(where(extensions.error()));
      std::tie(shape.min_ciphers, shape.max_ciphers) = *ciphers;
      std::tie(shape.min_extensions, shape.max_extensions) = *extensions;
      auto alpn = strings_of(s, "alpn");
      if (!alpn) return tl::unexpected(where(alpn.error()));
      auto hashes = strings_of(s, "cipher_hashes");
      if (!hashes) return tl::unexpected(where(hashes.error()));
      for (const auto& h : *hashes)
        if (h.size() != 12) return tl::unexpected(where("a cipher hash '" + h + "' is not 12 hex digits"));
      shape.alpn = std::move(*alpn);
      shape.cipher_hashes = std::move(*hashes);
      family.shapes.push_back(std::move(shape));
    }
    t.families_.push_back(std::move(family));
  }
  return t;
}

tl::expected<BrowserTable, std::string> BrowserTable::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return tl::unexpected(path + ": cannot open file");
  std::stringstream text;
  text << in.rdbuf();
  return from_json(text.str(), path);
}

BrowserTable BrowserTable::builtin() {
  auto t = from_json(embedded_browser_fingerprints_json(), "built-in browser table");
  return t ? std::move(*t) : BrowserTable{};
}

const BrowserFamily* BrowserTable::claimed_by(std::string_view ua) const {
  for (const auto& f : families_)
    for (const auto& s : f.user_agents)
      if (ua.find(s) != std::string_view::npos) return &f;
  return nullptr;
}

const BrowserFamily* BrowserTable::fitting(std::string_view ja4) const {
  for (const auto& f : families_)
    for (const auto& s : f.shapes)
      if (s.fits(ja4)) return &f;
  return nullptr;
}

SiteVerdict judge_site_client(const std::string& ja3, const std::string& ja4, const std::string& tlsfp,
                              const std::string& user_agent, const BrowserTable& browsers,
                              const FingerprintRegistry& devices) {
  SiteVerdict v;
  const BrowserFamily* claimed = browsers.claimed_by(user_agent);
  const BrowserFamily* fits = browsers.fitting(ja4);
  if (claimed) v.claimed = claimed->name;
  if (fits) v.looks_like = fits->name;
  if (auto hit = devices.match(ja3, ja4, tlsfp)) {
    v.verdict = "intercepted";
    v.reason = fmt::format("the hello is {}'s own ({} {})", hit->name, hit->field, hit->value);
  } else if (!claimed) {
    v.verdict = "unknown";
    v.reason = user_agent.empty() ? "no User-Agent to check the hello against"
                                  : "the User-Agent names no browser family in the table";
  } else if (fits == claimed) {
    v.verdict = "ok";
    v.reason = fmt::format("{} fits {}", ja4, claimed->name);
  } else {
    v.verdict = "mismatch";
    v.reason = fits ? fmt::format("the User-Agent claims {}, the hello ({}) is {}'s", claimed->name, ja4, fits->name)
                    : fmt::format("the User-Agent claims {}, the hello ({}) is no browser's in the table: a TLS "
                                  "library, or a box on the way that re-originated the connection",
                                  claimed->name, ja4);
  }
  return v;
}

nlohmann::ordered_json to_json(const SiteVerdict& v) {
  return {{"verdict", v.verdict},
          {"reason", v.reason},
          {"claimed", v.claimed.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v.claimed)},
          {"looks_like", v.looks_like.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v.looks_like)}};
}

std::string header_value(const SiteVerdict& v) { return v.verdict + "; reason=" + sf_string(v.reason); }

}  // namespace mw::fingerprint
