// What one TLS handshake observed: a plain value, cheap to build in tests.
#pragma once

#include "certs/registry.hpp"
#include "tls/ossl.hpp"
#include "tls/trust.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mw::tls {

enum class ProbeError {
  none,
  connect_refused,
  connect_timeout,
  connect_unreachable,  // EHOSTUNREACH/ENETUNREACH and other connect failures
  handshake_timeout,
  reset,
  eof,
  tls_alert,
  protocol_error,
};

struct Observation {
  std::string sni;  // empty: no SNI sent
  ProbeError error = ProbeError::none;
  int alert = -1;            // TLS alert description received, for tls_alert
  std::string error_detail;  // OpenSSL's words or errno text, for people
  std::string tls_version;
  std::string cipher;
  std::string alpn;
  std::vector<Der> chain;  // as sent, leaf first
  // The same certificates parsed, when they parse (the handshake hands them
  // over already parsed: d2i_X509 is costly in OpenSSL 3.0). Filled by the
  // probe, or from `chain` by parsed_chain().
  std::vector<X509Ref> parsed;
  double connect_ms = 0;
  double handshake_ms = 0;
  int64_t started_unix_ms = 0;
  // An identifying probe's HEAD request: whether it was sent, and the status
  // code answered (-1: none read before the wait ended).
  bool request_sent = false;
  int http_status = -1;

  // Filled by assess() once the handshake is done.
  TrustResult trust;
  std::optional<certs::InterceptorHit> interceptor;

  bool ok() const { return error == ProbeError::none; }
};

// "connect-refused", "tls-alert:112", ... ("" for none).
std::string error_name(const Observation& obs);

// The parsed certificates of the chain, parsing `chain` first if needed;
// stops at the first that does not parse.
const std::vector<X509Ref>& parsed_chain(Observation& obs);
// The parsed leaf, or null. Never parses: call parsed_chain() first.
X509* leaf(const Observation& obs);

// Verifies the chain and checks it against the interceptor registry.
void assess(Observation& obs, const TrustStore& trust, const certs::InterceptorRegistry& registry,
            VerifyCache* cache = nullptr);

}  // namespace mw::tls
