#include "lab/config.hpp"

#include "lab/tls_server.hpp"

#include "lab/schedule.hpp"
#include "lab/stand_in.hpp"

#include <stdexcept>

// toml++ compiled into this file (header-only): the sanitized and fuzzing
// builds then check its parser too. (toml11, used before, read past the end
// of an unterminated string at EOF: found by fuzz_lab_config.)
//
// toml++ 3.3 (Debian 12) states its parser's preconditions as assertions,
// and with NDEBUG as compiler assumptions; some malformed table headers
// ("[=", "[&": upstream issue 294, fixed after 3.3) break them, which is an
// abort with assertions and undefined behaviour without. Its assertions are
// kept on here, whatever NDEBUG says, and throw: the file is refused.
#pragma push_macro("NDEBUG")
#undef NDEBUG
#define TOML_ASSERT(expr) \
  ((expr) ? static_cast<void>(0) : throw std::invalid_argument("the TOML parser stopped at malformed input"))
#define TOML_HEADER_ONLY 1
#define TOML_ENABLE_FORMATTERS 0
#include <toml++/toml.h>
#pragma pop_macro("NDEBUG")

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <regex>
#include <sstream>

namespace mw {
std::string_view embedded_lab_toml();  // generated from data/lab.toml
}

namespace mw::lab {
namespace {

// Private (RFC 1918) or documentation ranges only: the lab never uses a real address.
bool allowed_lab_range(const net::Prefix& p) {
  static const char* kAllowed[] = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "192.0.2.0/24",
                                   "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15", "100.64.0.0/10"};
  for (const char* a : kAllowed) {
    auto range = *net::Prefix::parse(a);
    if (p.length >= range.length && range.contains(p.base)) return true;
  }
  return false;
}

// The error for a value of the wrong type: the key, what it should be, its line.
[[noreturn]] void wrong_type(const toml::node& n, const std::string& key, const char* wanted) {
  throw std::runtime_error(key + " must be " + wanted + " (line " + std::to_string(n.source().begin.line) + ")");
}

template <typename T>
struct Read;
template <>
struct Read<std::string> {
  static std::string from(const toml::node& n, const std::string& key) {
    if (auto v = n.value_exact<std::string>()) return *v;
    wrong_type(n, key, "a string");
  }
};
template <>
struct Read<int> {
  static int from(const toml::node& n, const std::string& key) {
    auto v = n.value_exact<int64_t>();
    if (!v || *v < INT_MIN || *v > INT_MAX) wrong_type(n, key, "an integer");
    return static_cast<int>(*v);
  }
};
template <>
struct Read<unsigned long> {
  static unsigned long from(const toml::node& n, const std::string& key) {
    auto v = n.value_exact<int64_t>();
    if (!v || *v < 0) wrong_type(n, key, "a non-negative integer");
    return static_cast<unsigned long>(*v);
  }
};
template <>
struct Read<double> {
  static double from(const toml::node& n, const std::string& key) {
    if (auto v = n.value_exact<double>()) return *v;
    if (auto v = n.value_exact<int64_t>()) return static_cast<double>(*v);
    wrong_type(n, key, "a number");
  }
};
template <>
struct Read<bool> {
  static bool from(const toml::node& n, const std::string& key) {
    if (auto v = n.value_exact<bool>()) return *v;
    wrong_type(n, key, "true or false");
  }
};
template <typename T>
struct Read<std::vector<T>> {
  static std::vector<T> from(const toml::node& n, const std::string& key) {
    const toml::array* a = n.as_array();
    if (!a) wrong_type(n, key, "an array");
    std::vector<T> out;
    for (size_t i = 0; i < a->size(); ++i) out.push_back(Read<T>::from(*a->get(i), key + "[" + std::to_string(i) + "]"));
    return out;
  }
};

// A key's value, or `fallback` when absent.
template <typename T>
T get_or(const toml::table& t, const std::string& key, T fallback) {
  const toml::node* n = t.get(key);
  return n ? Read<T>::from(*n, key) : fallback;
}

template <typename T>
T required(const toml::table& t, const std::string& key) {
  const toml::node* n = t.get(key);
  if (!n) throw std::runtime_error(key + " is missing");
  return Read<T>::from(*n, key);
}

const toml::table* table_at(const toml::table& t, const std::string& key) {
  const toml::node* n = t.get(key);
  if (!n) return nullptr;
  if (const toml::table* t = n->as_table()) return t;
  wrong_type(*n, key, "a table");
}

// [[key]]: an array of tables (absent: none).
std::vector<const toml::table*> tables_at(const toml::table& t, const std::string& key) {
  std::vector<const toml::table*> out;
  const toml::node* n = t.get(key);
  if (!n) return out;
  const toml::array* a = n->as_array();
  if (!a) wrong_type(*n, key, "an array of tables");
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::table* e = a->get(i)->as_table();
    if (!e) wrong_type(*a->get(i), key + "[" + std::to_string(i) + "]", "a table");
    out.push_back(e);
  }
  return out;
}

}  // namespace

std::string_view default_lab_toml() { return embedded_lab_toml(); }

const char* to_string(TriggerMatch m) {
  switch (m) {
    case TriggerMatch::exact: return "exact";
    case TriggerMatch::subdomains: return "subdomains";
    case TriggerMatch::suffix: return "suffix";
    case TriggerMatch::substring: return "substring";
  }
  return "?";
}

tl::expected<LabConfig, std::string> parse_lab_config(std::string_view text, const std::string& origin) {
  LabConfig c;
  std::string where;
  // Every value of a lab file is ASCII (names, addresses, modes). toml++ 3.3
  // reads some code points outside it with a shift past 63 bits (undefined
  // behaviour, found by fuzz_lab_config): they never reach it.
  for (size_t i = 0, line = 1; i < text.size(); ++i) {
    auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '\n') ++line;
    if (byte >= 0x80 || byte == 0)
      return tl::unexpected(fmt::format("{}: line {}: byte 0x{:02X}: a lab file is ASCII text", origin, line, byte));
  }
  try {
    toml::table doc;
    try {
      doc = toml::parse(text, origin);
    } catch (const toml::parse_error& e) {
      return tl::unexpected(origin + ": line " + std::to_string(e.source().begin.line) + ": " +
                            std::string(e.description()));
    }
    c.name = get_or<std::string>(doc, "name", c.name);
    c.routers = get_or<int>(doc, "routers", c.routers);
    c.device_after = get_or<int>(doc, "device_after", c.device_after);
    c.link_delay_ms = get_or<int>(doc, "link_delay_ms", c.link_delay_ms);
    c.icmp_ratelimit_ms = get_or<int>(doc, "icmp_ratelimit_ms", c.icmp_ratelimit_ms);
    c.silent_routers = get_or<std::vector<int>>(doc, "silent_routers", c.silent_routers);
    if (const toml::table* device = table_at(doc, "device")) {
      const auto& d = *device;
      c.device.enabled = get_or<bool>(d, "enabled", true);
      std::string match = get_or<std::string>(d, "match", std::string("subdomains"));
      static const std::pair<const char*, TriggerMatch> kMatches[] = {{"exact", TriggerMatch::exact},
                                                                      {"subdomains", TriggerMatch::subdomains},
                                                                      {"suffix", TriggerMatch::suffix},
                                                                      {"substring", TriggerMatch::substring}};
      auto m = std::find_if(std::begin(kMatches), std::end(kMatches), [&](const auto& k) { return match == k.first; });
      if (m == std::end(kMatches))
        return tl::unexpected(origin + ": device.match must be \"exact\", \"subdomains\", \"suffix\" or \"substring\"");
      c.device.match = m->second;
      c.device.case_sensitive = get_or<bool>(d, "case_sensitive", false);
      std::string entry = get_or<std::string>(d, "sni_entry", std::string("first"));
      if (entry != "first" && entry != "last")
        return tl::unexpected(origin + ": device.sni_entry must be \"first\" or \"last\"");
      c.device.last_sni_entry = entry == "last";
      for (const auto& r : get_or<std::vector<std::string>>(d, "reassemble", std::vector<std::string>{})) {
        if (r == "segments") c.device.reassemble_segments = true;
        else if (r == "records") c.device.reassemble_records = true;
        else return tl::unexpected(origin + ": device.reassemble: '" + r + "' is not \"segments\" or \"records\"");
      }
      c.device.fraction = get_or<double>(d, "fraction", 1.0);
      c.device.triggers = get_or<std::vector<std::string>>(d, "triggers", std::vector<std::string>{});
      c.device.schedule = get_or<std::vector<std::string>>(d, "schedule", std::vector<std::string>{});
      for (const auto& step : c.device.schedule)
        if (auto ok = parse_schedule_step(step); !ok) return tl::unexpected(origin + ": device.schedule: " + ok.error());
    }
    if (const toml::table* forgery = table_at(doc, "forgery")) {
      const auto& f = *forgery;
      auto& g = c.forgery;
      g.validity_shift_hours = get_or<int>(f, "validity_shift_hours", g.validity_shift_hours);
      g.serial_low_bits_replaced = get_or<int>(f, "serial_low_bits_replaced", g.serial_low_bits_replaced);
      g.rsa_bits = get_or<int>(f, "rsa_bits", g.rsa_bits);
      g.rsa_exponent = get_or<unsigned long>(f, "rsa_exponent", g.rsa_exponent);
      g.root_name = get_or<std::string>(f, "root_name", g.root_name);
      g.intermediate_name = get_or<std::string>(f, "intermediate_name", g.intermediate_name);
      g.country = get_or<std::string>(f, "country", g.country);
    }
    int i = 0;
    for (const toml::table* v : tables_at(doc, "vantages")) {
      where = "vantages[" + std::to_string(i++) + "]";
      c.vantages.push_back({required<std::string>(*v, "name"), get_or<int>(*v, "attach", 1)});
    }
    i = 0;
    for (const toml::table* prefix : tables_at(doc, "prefixes")) {
      const auto& p = *prefix;
      where = "prefixes[" + std::to_string(i++) + "]";
      PrefixConfig pc;
      pc.name = required<std::string>(p, "name");
      auto cidr = net::Prefix::parse(required<std::string>(p, "cidr"));
      if (!cidr || cidr->base.family != AF_INET) return tl::unexpected(origin + ": " + where + ".cidr: needs an IPv4 prefix");
      if (!allowed_lab_range(*cidr))
        return tl::unexpected(origin + ": " + where + ".cidr " + cidr->to_string() +
                              " is not a private or documentation range");
      pc.cidr = *cidr;
      pc.servers = get_or<int>(p, "servers", 0);
      pc.untrusted = get_or<int>(p, "untrusted", 0);
      pc.attach = get_or<int>(p, "attach", 1);
      pc.via_device = get_or<bool>(p, "via_device", true);
      if (const toml::node* h = p.get("hostile")) {
        if (h->is_string()) pc.hostile = {Read<std::string>::from(*h, "hostile")};
        else pc.hostile = Read<std::vector<std::string>>::from(*h, "hostile");
        for (const auto& mode : pc.hostile)
          if (mode != "huge-chain" && !misbehaviour_named(mode))
            return tl::unexpected(origin + ": " + where + ".hostile: '" + mode +
                                  "' is not garbage, drip, stall, reset, never-finish, huge-hello or huge-chain");
      }
      if (pc.servers < 1 || static_cast<uint64_t>(pc.servers) + 2 > cidr->count() || pc.untrusted < 0 ||
          pc.untrusted > pc.servers)
        return tl::unexpected(origin + ": " + where + ": servers must be 1..(prefix size - 2), untrusted 0..servers");
      c.prefixes.push_back(pc);
    }
  } catch (const std::exception& e) {
    return tl::unexpected(origin + ": " + (where.empty() ? "" : where + ": ") + e.what());
  }
  if (!std::regex_match(c.name, std::regex("[a-z0-9]{1,6}")))
    return tl::unexpected(origin + ": name must be 1-6 lower-case letters or digits");
  if (c.routers < 2 || c.routers > 30) return tl::unexpected(origin + ": routers must be 2..30");
  if (c.device_after < 0 || c.device_after >= c.routers)
    return tl::unexpected(origin + ": device_after must be 0..routers-1");
  if (c.link_delay_ms < 0 || c.link_delay_ms > 1000) return tl::unexpected(origin + ": link_delay_ms must be 0..1000");
  if (c.icmp_ratelimit_ms < 0 || c.icmp_ratelimit_ms > 60000)
    return tl::unexpected(origin + ": icmp_ratelimit_ms must be 0..60000");
  for (int r : c.silent_routers)
    if (r < 1 || r > c.routers)
      return tl::unexpected(origin + ": silent_routers: " + std::to_string(r) + " is not a router (1.." +
                            std::to_string(c.routers) + ")");
  if (c.device.fraction < 0 || c.device.fraction > 1) return tl::unexpected(origin + ": device.fraction must be 0..1");
  c.source_toml = std::string(text);
  if (c.device.triggers.empty()) c.device.triggers.assign(kKz2019Triggers.begin(), kKz2019Triggers.end());
  if (c.vantages.empty() || c.prefixes.empty())
    return tl::unexpected(origin + ": needs at least one [[vantages]] and one [[prefixes]]");
  for (const auto& v : c.vantages) {
    if (!std::regex_match(v.name, std::regex("[a-z0-9]{1,8}")))
      return tl::unexpected(origin + ": vantage name '" + v.name + "' must be 1-8 lower-case letters or digits");
    if (v.attach < 1 || v.attach > c.routers) return tl::unexpected(origin + ": vantage '" + v.name + "' attach out of range");
  }
  for (size_t a = 0; a < c.prefixes.size(); ++a) {
    if (c.prefixes[a].attach < 1 || c.prefixes[a].attach > c.routers)
      return tl::unexpected(origin + ": prefix '" + c.prefixes[a].name + "' attach out of range");
    for (size_t b = 0; b < a; ++b)
      if (c.prefixes[a].cidr.contains(c.prefixes[b].cidr.base) || c.prefixes[b].cidr.contains(c.prefixes[a].cidr.base))
        return tl::unexpected(origin + ": prefixes '" + c.prefixes[b].name + "' and '" + c.prefixes[a].name + "' overlap");
  }
  return c;
}

tl::expected<LabConfig, std::string> load_lab_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return tl::unexpected(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_lab_config(ss.str(), path);
}

LabConfig default_lab_config() {
  auto c = parse_lab_config(default_lab_toml(), "data/lab.toml");
  if (!c) std::abort();  // the shipped file is checked by the tests
  return *c;
}

}  // namespace mw::lab
