#include "drivers/sweep.hpp"

#include "records/scan_record.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cctype>

namespace mw::drivers {
namespace {

using Json = nlohmann::ordered_json;

std::string mixed_case(const std::string& d) {
  std::string out = d;
  bool up = true;
  for (char& c : out)
    if (std::isalpha(static_cast<unsigned char>(c))) {
      c = static_cast<char>(up ? std::toupper(static_cast<unsigned char>(c)) : c);
      up = !up;
    }
  return out;
}

std::string tld_swapped(const std::string& d) {
  auto dot = d.rfind('.');
  std::string stem = dot == std::string::npos ? d : d.substr(0, dot);
  std::string tld = dot == std::string::npos ? "" : d.substr(dot + 1);
  return stem + (tld == "net" ? ".org" : ".net");
}

SweepCase make_case(const std::string& domain, const std::string& variant, std::vector<std::string> names) {
  SweepCase c;
  c.domain = domain;
  c.variant = variant;
  c.spec.server_names = std::move(names);
  return c;
}

}  // namespace

std::string SweepCase::label() const { return variant == "plain" ? domain : variant + " " + domain; }

std::vector<SweepCase> rule_variants(const std::string& d, const std::string& control) {
  std::vector<SweepCase> v;
  v.push_back(make_case(d, "exact", {d}));
  // Matching: which relatives of the name trigger too.
  v.push_back(make_case(d, "subdomain", {"mwsub." + d}));
  v.push_back(make_case(d, "suffix", {"mwnot" + d}));
  v.push_back(make_case(d, "prefix", {d + ".mwprobe.example"}));
  v.push_back(make_case(d, "substring", {"mw" + d + ".mwprobe.example"}));
  v.push_back(make_case(d, "mixed-case", {mixed_case(d)}));
  v.push_back(make_case(d, "trailing-dot", {d + "."}));
  v.push_back(make_case(d, "tld-swap", {tld_swapped(d)}));
  // The server_name extension itself.
  v.push_back(make_case(d, "empty-sni", {""}));
  auto none = make_case(d, "no-sni", {});
  none.spec.send_sni = false;
  v.push_back(none);
  v.push_back(make_case(d, "two-sni-trigger-first", {d, control}));
  v.push_back(make_case(d, "two-sni-trigger-last", {control, d}));
  auto padded = make_case(d, "padded", {d});
  padded.spec.pad_to = 1024;
  v.push_back(padded);
  // Does it reassemble? The first record / segment holds no server_name:
  // 6 bytes of the handshake message (type, length, version), 11 on the wire.
  auto records = make_case(d, "record-split", {d});
  records.spec.record_splits = {6};
  v.push_back(records);
  auto segments = make_case(d, "segment-split", {d});
  segments.spec.segment_splits = {11};
  v.push_back(segments);
  auto bytewise = make_case(d, "byte-segments", {d});
  bytewise.spec.bytewise = true;
  v.push_back(bytewise);
  // Versions and shapes of hello.
  auto tls13 = make_case(d, "tls13", {d});
  tls13.openssl_tls13 = true;
  v.push_back(tls13);
  for (const char* t : {"chrome", "firefox", "fb2019", "minimal12"}) {
    auto c = make_case(d, std::string("template-") + t, {d});
    c.template_name = t;
    v.push_back(c);
  }
  return v;
}

SweepProbes::SweepProbes(hello::Template tpl, bool tls12_only, const std::vector<SweepCase>& cases,
                         std::string control_sni, const tls::ClientProfile& tls13_profile,
                         std::optional<net::IpAddress> source)
    : tpl_(std::move(tpl)), tls12_only_(tls12_only), cases_(cases), control_sni_(std::move(control_sni)),
      tls13_profile_(tls13_profile), source_(std::move(source)) {
  for (const auto& c : cases_)
    if (!c.template_name.empty() && !other_templates_.count(c.template_name))
      if (auto t = hello::find_template(c.template_name)) other_templates_.emplace(c.template_name, std::move(*t));
}

std::unique_ptr<tls::Probe> SweepProbes::make(const net::Endpoint& target, std::optional<size_t> test) {
  hello::HelloSpec spec;
  const hello::Template* tpl = &tpl_;
  std::string sni = control_sni_;
  if (test) {
    const SweepCase& c = cases_.at(*test);
    if (c.openssl_tls13) {
      std::string name = c.spec.server_names.empty() ? "" : c.spec.server_names.front();
      return std::make_unique<tls::Handshake>(tls13_profile_, target, name, source_);
    }
    spec = c.spec;
    sni = c.spec.server_names.empty() ? "" : c.spec.server_names.front();
    if (auto it = other_templates_.find(c.template_name); it != other_templates_.end()) tpl = &it->second;
  } else {
    spec.send_sni = !control_sni_.empty();
    if (spec.send_sni) spec.server_names = {control_sni_};
  }
  spec.tls12_only = tls12_only_;
  uint8_t random[64];
  RAND_bytes(random, sizeof random);
  auto message = hello::build_handshake(tpl->hello, spec, random);
  auto wire = hello::to_wire(message, tpl->hello.record_version, spec);
  return std::make_unique<hello::RawHelloProbe>(target, std::move(wire), sni, source_, probe_cache_);
}

Json sweep_record_json(const records::ScanRecord& r, const SweepCase& c) {
  Json names = Json::array();
  for (const auto& n : c.spec.server_names) names.push_back(records::utf8_safe(n));
  Json reasons = Json::array();
  for (const auto& why : r.result.reasons) reasons.push_back(records::utf8_safe(why));
  Json attempts = Json::array();
  for (const auto& a : r.attempts) {
    const auto& o = a.observation;
    Json leaf = o.chain.empty() ? Json(nullptr) : records::leaf_summary(o);
    if (leaf.is_object()) leaf.erase("dns_names");
    attempts.push_back({{"role", a.role},
                        {"started_ms", o.started_unix_ms},
                        {"error", o.ok() ? Json(nullptr) : Json(tls::error_name(o))},
                        {"tls_version", o.tls_version.empty() ? Json(nullptr) : Json(o.tls_version)},
                        {"handshake_ms", o.handshake_ms},
                        {"trusted", o.ok() ? Json(o.trust.trusted) : Json(nullptr)},
                        {"leaf", std::move(leaf)}});
  }
  return {{"schema", kSweepSchema},
          {"target", r.target.to_string()},
          {"sni", records::utf8_safe(c.label())},
          {"domain", records::utf8_safe(c.domain)},
          {"variant", c.variant},
          {"server_names", c.spec.send_sni ? std::move(names) : Json(nullptr)},
          {"control_sni", r.control_sni.empty() ? Json(nullptr) : Json(r.control_sni)},
          {"verdict", verdict::to_string(r.result.verdict)},
          {"reasons", std::move(reasons)},
          {"intercepted_attempts", r.intercepted_attempts},
          {"attempts", std::move(attempts)}};
}

std::optional<bool> VariantTally::triggered(bool blocked_is_no) const {
  if (intercepted > 0) return true;
  if (clean > 0 || (blocked_is_no && blocked > 0)) return false;
  return std::nullopt;
}

void tally(Tallies& t, const std::string& domain, const std::string& variant, verdict::Verdict v) {
  auto& x = t[domain][variant];
  if (v == verdict::Verdict::intercepted) ++x.intercepted;
  else if (v == verdict::Verdict::clean) ++x.clean;
  else if (v == verdict::Verdict::blocked) ++x.blocked;
  else ++x.other;
}

DomainRule infer_domain_rule(const std::string& domain, const std::map<std::string, VariantTally>& variants) {
  DomainRule r;
  r.domain = domain;
  auto seen = [&](const char* v) -> std::optional<bool> {
    auto it = variants.find(v);
    return it == variants.end() ? std::nullopt : it->second.triggered(std::string_view(v).rfind("two-sni", 0) == 0);
  };
  auto exact = seen("exact");
  auto sub = seen("subdomain"), suf = seen("suffix"), pre = seen("prefix"), mid = seen("substring");
  if (!exact || !*exact) {
    r.match = exact ? "not-a-trigger" : "unknown";
  } else if (!sub || !suf || !pre || !mid) {
    r.match = "unknown";
  } else if (!*sub && !*suf && !*pre && !*mid) {
    r.match = "exact";
  } else if (*sub && !*suf && !*pre && !*mid) {
    r.match = "subdomains";
  } else if (*sub && *suf && !*pre && !*mid) {
    r.match = "suffix";
  } else if (!*suf && *pre && !*mid) {
    r.match = "prefix";
  } else if (*sub && *suf && *pre && *mid) {
    r.match = "substring";
  } else {
    r.match = "unclassified";
  }
  auto first = seen("two-sni-trigger-first"), last = seen("two-sni-trigger-last");
  if (!first || !last) r.sni_entry = "unknown";
  else if (*first && *last) r.sni_entry = "any";
  else if (*first) r.sni_entry = "first";
  else if (*last) r.sni_entry = "last";
  else r.sni_entry = "neither";
  r.facts["case_insensitive"] = seen("mixed-case");
  r.facts["trailing_dot"] = seen("trailing-dot");
  r.facts["tld_swap"] = seen("tld-swap");
  r.facts["empty_sni"] = seen("empty-sni");
  r.facts["no_sni"] = seen("no-sni");
  r.facts["padded"] = seen("padded");
  r.facts["reassembles_records"] = seen("record-split");
  r.facts["reassembles_segments"] = seen("segment-split");
  r.facts["reassembles_byte_segments"] = seen("byte-segments");
  r.facts["tls13"] = seen("tls13");
  for (const auto& [variant, t] : variants)
    if (variant.rfind("template-", 0) == 0) r.facts[variant] = t.triggered();
  return r;
}

namespace {

template <typename T>
T majority(const std::vector<T>& votes, T none) {
  std::map<T, int> count;
  for (const auto& v : votes) ++count[v];
  T best = none;
  int most = 0;
  for (const auto& [v, n] : count)
    if (n > most) {
      best = v;
      most = n;
    }
  return best;
}

std::string yes_no(const std::optional<bool>& b, const char* yes, const char* no) {
  return !b ? std::string("unknown whether it ") + yes : *b ? yes : no;
}

std::string describe(const DomainRule& r) {
  static const std::map<std::string, std::string> kMatch = {
      {"exact", "the server_name equals a trigger"},
      {"subdomains", "the server_name is a trigger or one of its subdomains"},
      {"suffix", "the server_name ends with a trigger (notfacebook.com too)"},
      {"prefix", "the server_name starts with a trigger (facebook.com.example too)"},
      {"substring", "the server_name contains a trigger anywhere"},
      {"unclassified", "the server_name relates to a trigger in a way no simple rule fits"},
      {"unknown", "the matching rule could not be told (no answers)"}};
  auto m = kMatch.count(r.match) ? kMatch.at(r.match) : r.match;
  auto fact = [&](const char* k) { return r.facts.count(k) ? r.facts.at(k) : std::nullopt; };
  std::string entry = r.sni_entry == "first"   ? "reads the first server_name entry"
                      : r.sni_entry == "last"  ? "reads the last server_name entry"
                      : r.sni_entry == "any"   ? "triggers on any server_name entry"
                      : r.sni_entry == "neither" ? "ignores hellos with two server_name entries"
                                                 : "";
  std::string words = "Intercepts when " + m + ", " +
                      yes_no(fact("case_insensitive"), "ignoring case", "case-sensitively") +
                      (entry.empty() ? "; which server_name entry it reads is unknown; " : "; it " + entry + "; ") +
                      yes_no(fact("reassembles_records"), "reassembles hellos split over TLS records",
                             "does not reassemble hellos split over TLS records") +
                      "; " +
                      yes_no(fact("reassembles_segments"), "reassembles hellos split over TCP segments",
                             "does not reassemble hellos split over TCP segments");
  if (auto b = fact("reassembles_byte_segments"); b && fact("reassembles_segments").value_or(false))
    words += *b ? " (even one byte per segment)" : " (but not one byte per segment)";
  if (auto b = fact("tls13")) words += *b ? "; TLS 1.3 hellos trigger it too" : "; TLS 1.3 hellos do not trigger it";
  if (auto b = fact("trailing_dot")) words += *b ? "; a trailing dot still triggers" : "; a trailing dot evades it";
  std::vector<std::string> evading;
  for (const auto& [k, v] : r.facts)
    if (k.rfind("template-", 0) == 0 && v && !*v) evading.push_back(k.substr(9));
  if (!evading.empty()) {
    words += "; hellos shaped like ";
    for (size_t i = 0; i < evading.size(); ++i) words += (i ? ", " : "") + evading[i];
    words += " do not trigger it";
  }
  return words + ".";
}

}  // namespace

DeviceRule infer_device_rule(const Tallies& tallies, const std::vector<std::string>& triggers) {
  DeviceRule out;
  for (const auto& d : triggers) {
    auto it = tallies.find(d);
    if (it == tallies.end()) continue;
    out.domains.push_back(infer_domain_rule(d, it->second));
    bool contains_other = std::any_of(triggers.begin(), triggers.end(), [&](const std::string& other) {
      return other != d && d.find(other) != std::string::npos;
    });
    if (!contains_other) out.decided_by.push_back(d);
  }
  if (out.decided_by.empty())
    for (const auto& r : out.domains) out.decided_by.push_back(r.domain);
  std::vector<std::string> matches, entries;
  std::map<std::string, std::vector<int>> facts;  // -1 unknown, 0 no, 1 yes
  for (const auto& r : out.domains) {
    if (std::find(out.decided_by.begin(), out.decided_by.end(), r.domain) == out.decided_by.end()) continue;
    matches.push_back(r.match);
    entries.push_back(r.sni_entry);
    for (const auto& [k, v] : r.facts) facts[k].push_back(v ? (*v ? 1 : 0) : -1);
  }
  out.rule.domain = "*";
  out.rule.match = majority(matches, std::string("unknown"));
  out.rule.sni_entry = majority(entries, std::string("unknown"));
  for (const auto& [k, votes] : facts) {
    int m = majority(votes, -1);
    out.rule.facts[k] = m < 0 ? std::nullopt : std::optional<bool>(m == 1);
  }
  out.words = describe(out.rule);
  return out;
}

Json to_json(const DomainRule& r) {
  Json facts = Json::object();
  for (const auto& [k, v] : r.facts) facts[k] = v ? Json(*v) : Json(nullptr);
  return {{"domain", r.domain}, {"match", r.match}, {"sni_entry", r.sni_entry}, {"facts", std::move(facts)}};
}

Json to_json(const DeviceRule& r) {
  Json domains = Json::array();
  for (const auto& d : r.domains) domains.push_back(to_json(d));
  Json rule = to_json(r.rule);
  rule.erase("domain");
  return {{"schema", kSweepRuleSchema},
          {"rule", std::move(rule)},
          {"words", r.words},
          {"decided_by", r.decided_by},
          {"domains", std::move(domains)}};
}

}  // namespace mw::drivers
