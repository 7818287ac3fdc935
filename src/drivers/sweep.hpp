// The sweep driver: which domains trigger interception, and by what rule.
// A sweep is a scan whose tests are (domain, hello variant) pairs sent as raw
// ClientHellos (src/hello/): the scan loop, the HyperQuack retry/control
// rule and the forgery detector are the scan's own (drivers/scan.cpp,
// verdict/). Rule inference sends each trigger domain again in variants
// (subdomain, suffix, case, two server_name entries, split hellos, ...) and
// reads the device's matching rule off which variants were intercepted.
#pragma once

#include "drivers/scan.hpp"
#include "hello/client_hello.hpp"
#include "hello/raw_probe.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mw::drivers {

inline constexpr const char* kSweepSchema = "mitmwatch.sweep/1";
inline constexpr const char* kSweepRuleSchema = "mitmwatch.sweep-rule/1";

// One test of a sweep: the domain it is about, how the hello carries it.
struct SweepCase {
  std::string domain;
  std::string variant = "plain";  // "plain" in the sweep itself; a variant name in rule inference
  hello::HelloSpec spec;          // server_names etc.; the template is the sweep's unless `template_name`
  std::string template_name;      // another template for this case ("" : the sweep's)
  bool openssl_tls13 = false;     // complete a TLS 1.3 handshake with OpenSSL instead of a raw hello
  std::string label() const;      // unique per case: the record's "sni" key for resume
};

// The variants that tell one trigger domain's matching rule apart.
// `control` is a name known not to trigger (the sweep's control SNI).
std::vector<SweepCase> rule_variants(const std::string& domain, const std::string& control);

// Makes the probes of a sweep: raw hellos from `tpl` per case, the control
// with the same template and the control SNI; TLS 1.3 cases via OpenSSL.
class SweepProbes {
 public:
  SweepProbes(hello::Template tpl, bool tls12_only, const std::vector<SweepCase>& cases, std::string control_sni,
              const tls::ClientProfile& tls13_profile, std::optional<net::IpAddress> source);
  std::unique_ptr<tls::Probe> make(const net::Endpoint& target, std::optional<size_t> test);

 private:
  hello::Template tpl_;
  bool tls12_only_;
  const std::vector<SweepCase>& cases_;
  std::string control_sni_;
  const tls::ClientProfile& tls13_profile_;
  std::optional<net::IpAddress> source_;
  std::map<std::string, hello::Template> other_templates_;
  hello::ProbeCache probe_cache_;
};

// A sweep record: compact (no chains; the leaf's issuer and hash per attempt).
nlohmann::ordered_json sweep_record_json(const records::ScanRecord& record, const SweepCase& c);

// Per (domain, variant): on how many servers it was intercepted, clean, or neither.
struct VariantTally {
  int intercepted = 0, clean = 0, blocked = 0, other = 0;
  // nullopt: no server gave a clean or intercepted answer. `blocked_is_no`:
  // a failure where the control succeeded counts as not intercepted (servers
  // refuse hellos with two server_name entries; only a forged chain is a yes).
  std::optional<bool> triggered(bool blocked_is_no = false) const;
};
using Tallies = std::map<std::string, std::map<std::string, VariantTally>>;  // domain -> variant -> tally
void tally(Tallies& t, const std::string& domain, const std::string& variant, verdict::Verdict v);

// What the variants of one domain say of the rule.
struct DomainRule {
  std::string domain;
  std::string match;  // exact | subdomains | suffix | prefix | substring | unclassified | not-a-trigger
  std::map<std::string, std::optional<bool>> facts;  // case_insensitive, trailing_dot, ... (nullopt: unknown)
  std::string sni_entry;                             // first | last | any | neither | unknown
};
DomainRule infer_domain_rule(const std::string& domain, const std::map<std::string, VariantTally>& variants);

// The rule across trigger domains: each fact by majority over the domains
// that contain no other trigger (a variant of www.facebook.com is also a
// subdomain of facebook.com, which would blur what is seen).
struct DeviceRule {
  std::vector<DomainRule> domains;
  std::vector<std::string> decided_by;  // the domains the majority is over
  DomainRule rule;
  std::string words;
};
DeviceRule infer_device_rule(const Tallies& tallies, const std::vector<std::string>& triggers);
nlohmann::ordered_json to_json(const DomainRule& r);
nlohmann::ordered_json to_json(const DeviceRule& r);

}  // namespace mw::drivers
