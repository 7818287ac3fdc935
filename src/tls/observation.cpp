#include "tls/observation.hpp"

#include "certs/x509.hpp"

namespace mw::tls {

std::string error_name(const Observation& obs) {
  switch (obs.error) {
    case ProbeError::none: return "";
    case ProbeError::connect_refused: return "connect-refused";
    case ProbeError::connect_timeout: return "connect-timeout";
    case ProbeError::connect_unreachable: return "connect-unreachable";
    case ProbeError::handshake_timeout: return "handshake-timeout";
    case ProbeError::reset: return "reset";
    case ProbeError::eof: return "eof";
    case ProbeError::tls_alert: return "tls-alert:" + std::to_string(obs.alert);
    case ProbeError::protocol_error: return "protocol-error";
  }
  return "protocol-error";
}

void assess(Observation& obs, const TrustStore& trust, const certs::InterceptorRegistry& registry) {
  if (!obs.ok() || obs.chain.empty()) return;
  std::vector<X509Ptr> owned;
  std::vector<X509*> chain;
  for (const auto& der : obs.chain) {
    auto cert = certs::from_der(der);
    if (!cert) break;  // a chain OpenSSL accepted parses; stop at anything odd
    chain.push_back(cert->get());
    owned.push_back(std::move(*cert));
  }
  obs.trust = trust.verify(chain, obs.sni);
  obs.interceptor = registry.match(chain);
}

}  // namespace mw::tls
