// Certificates as servers send them (DER), or as files hold them (PEM):
// everything the scan reads from a chain, and the record built from it.
#include "certs/forensics.hpp"
#include "certs/registry.hpp"
#include "certs/x509.hpp"
#include "records/scan_record.hpp"
#include "verdict/verdict.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto registry = mw::certs::InterceptorRegistry::builtin();
  static const auto trust = mw::tls::TrustStore::empty();
  mw::tls::Der der(data, data + size);
  mw::tls::Observation obs;
  obs.sni = "facebook.com";
  // The chain as a server might send it: this input, then its two halves.
  obs.chain.push_back(der);
  obs.chain.emplace_back(data, data + size / 2);
  obs.chain.emplace_back(data + size / 2, data + size);
  mw::tls::assess(obs, trust, registry);
  (void)mw::records::to_json(obs, "test").dump();
  mw::tls::Observation control = obs;
  control.chain.erase(control.chain.begin());
  (void)mw::verdict::compare(obs, control);
  // The forensics path: facts, shape, and a diff of the input against itself.
  if (!obs.parsed.empty()) {
    X509* leaf = obs.parsed.front().get();
    (void)mw::certs::shape_fingerprint(leaf);
    mw::certs::Chain chain;
    chain.certs = obs.parsed;
    (void)mw::certs::to_json(mw::certs::diff(chain, chain, trust, registry)).dump();
  }
  (void)mw::certs::parse_pem(std::string_view(reinterpret_cast<const char*>(data), size));
  (void)mw::certs::unbase64(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
