// The site-side alarm of the report ("affected domains could use this
// fingerprint to tell when a connection is being intercepted, and alert the
// user"): given the ClientHello a site received and the User-Agent of the
// request that followed, was the connection re-originated on the way?
//
//   intercepted  the hello is a known interception device's own (the registry)
//   mismatch     the User-Agent claims a browser whose engine never sends
//                such a hello (a TLS library, or a box we do not know yet)
//   ok           the hello fits the browser the User-Agent claims
//   unknown      the User-Agent names no family in the table
//
// The browser table (data/browser-fingerprints.json, compiled in) bounds each
// family's hellos by JA4's first two parts, drawn from real captures.
#pragma once

#include "fingerprint/fingerprint_registry.hpp"

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace mw::fingerprint {

struct HelloShape {
  char transport = 't';
  std::string version;  // "13"
  int min_ciphers = 0, max_ciphers = 0, min_extensions = 0, max_extensions = 0;
  std::vector<std::string> alpn;           // JA4's two-character ALPN
  std::vector<std::string> cipher_hashes;  // JA4_b
  bool fits(std::string_view ja4) const;
};

struct BrowserFamily {
  std::string name;
  std::vector<std::string> user_agents;  // substrings that claim the family
  std::vector<HelloShape> shapes;
};

class BrowserTable {
 public:
  static tl::expected<BrowserTable, std::string> from_json(std::string_view text, std::string_view origin);
  static tl::expected<BrowserTable, std::string> from_file(const std::string& path);
  static BrowserTable builtin();
  // The family a User-Agent claims, or null.
  const BrowserFamily* claimed_by(std::string_view user_agent) const;
  // The family whose shapes the JA4 fits, or null.
  const BrowserFamily* fitting(std::string_view ja4) const;
  const std::vector<BrowserFamily>& families() const { return families_; }

 private:
  std::vector<BrowserFamily> families_;
};

struct SiteVerdict {
  std::string verdict;  // ok, mismatch, intercepted, unknown
  std::string reason;
  std::string claimed;     // the family the User-Agent claims ("" none)
  std::string looks_like;  // the family the hello fits ("" none)
};

SiteVerdict judge_site_client(const std::string& ja3, const std::string& ja4, const std::string& tlsfp,
                              const std::string& user_agent, const BrowserTable& browsers,
                              const FingerprintRegistry& devices);
nlohmann::ordered_json to_json(const SiteVerdict& v);
// As an HTTP header value (a structured-field item): `mismatch; reason="..."`.
std::string header_value(const SiteVerdict& v);

}  // namespace mw::fingerprint
