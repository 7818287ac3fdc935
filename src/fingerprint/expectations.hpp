// What each client is expected to send, for the fingerprint server: per
// source prefix (e.g. a measurement probe's address) and per User-Agent.
// A connection from a listed source, or claiming a listed User-Agent, whose
// ClientHello is not among the expected ones was re-originated by something
// in between: a middlebox that terminates and reconnects (the report's
// "Censor's Fingerprint").
//
//   {"sources": [{"cidr": "10.61.0.0/24", "name": "probe", "ja4": ["t13d..."]}],
//    "user_agents": [{"contains": "curl/", "ja3": ["..."], "tlsfp": ["..."]}]}
#pragma once

#include "net/address.hpp"

#include <tl/expected.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace mw::fingerprint {

struct ClientPrints {
  std::string ja3, ja4, tlsfp;
};

struct Expectation {
  std::string name;  // the rule, for people: its name, CIDR or User-Agent substring
  std::vector<std::string> ja3, ja4, tlsfp;
};

struct Mismatch {
  std::string rule, field, got;
};

class Expectations {
 public:
  static tl::expected<Expectations, std::string> from_json(std::string_view text, std::string_view origin);
  static tl::expected<Expectations, std::string> from_file(const std::string& path);
  // Rules that apply and are not met. Empty: as expected, or nothing applies.
  std::vector<Mismatch> check(const net::IpAddress& source, const std::string& user_agent, const ClientPrints& p) const;
  // Whether any User-Agent rule exists (then the verdict waits for the request).
  bool has_user_agent_rules() const { return !by_user_agent_.empty(); }

 private:
  std::vector<std::pair<net::Prefix, Expectation>> by_source_;
  std::vector<std::pair<std::string, Expectation>> by_user_agent_;
};

}  // namespace mw::fingerprint
