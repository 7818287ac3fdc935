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

const std::vector<X509Ref>& parsed_chain(Observation& obs) {
  if (obs.parsed.empty()) {
    for (const auto& der : obs.chain) {
      auto cert = certs::from_der(der);
      if (!cert) break;
      obs.parsed.push_back(X509Ref::adopt(std::move(*cert)));
    }
  }
  return obs.parsed;
}

X509* leaf(const Observation& obs) { return obs.parsed.empty() ? nullptr : obs.parsed.front().get(); }

void assess(Observation& obs, const TrustStore& trust, const certs::InterceptorRegistry& registry,
            VerifyCache* cache) {
  if (!obs.ok() || obs.chain.empty()) return;
  std::vector<X509*> chain;
  for (const auto& c : parsed_chain(obs)) chain.push_back(c.get());
  obs.trust = trust.verify(chain, obs.sni, cache);
  obs.interceptor = registry.match(chain);
}

}  // namespace mw::tls
