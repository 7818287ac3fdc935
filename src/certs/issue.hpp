// Making certificates: lab and test CAs, leaves, and forgeries made the way
// the 2019 Kazakh device made them (the reference report's "Injected
// Certificates"). The lab's interception device and the tests use these.
#pragma once

#include "tls/ossl.hpp"

#include <tl/expected.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace mw::certs {

using NameParts = std::vector<std::pair<std::string, std::string>>;  // {"C","KZ"},{"CN","..."}

tls::EvpPkeyPtr make_ec_p256_key();
tls::EvpPkeyPtr make_rsa_key(int bits, unsigned long exponent = 65537);

struct Authority {
  tls::X509Ptr cert;
  tls::EvpPkeyPtr key;
};

// A leaf (or intermediate) with the chain a server sends after it.
struct ServedChain {
  tls::X509Ptr leaf;
  tls::EvpPkeyPtr key;
  std::vector<tls::X509Ptr> intermediates;
};

struct CertSpec {
  NameParts subject;
  std::vector<std::string> dns_names;
  std::chrono::seconds not_before_offset{-3600};           // relative to now
  std::chrono::seconds not_after_offset{90 * 24 * 3600};
  bool is_ca = false;
  std::vector<unsigned char> serial;  // empty: 16 random bytes
  // Adds an extension of this many opaque bytes (to make huge chains in tests).
  size_t padding_extension_bytes = 0;
};

tls::X509Ptr issue(const CertSpec& spec, EVP_PKEY* subject_key, const Authority* issuer);

Authority make_root(const NameParts& subject, tls::EvpPkeyPtr key = nullptr);
Authority make_intermediate(const Authority& parent, const NameParts& subject, tls::EvpPkeyPtr key = nullptr);
ServedChain make_leaf(const Authority& ca, const std::vector<std::string>& dns_names,
                      const std::vector<const Authority*>& intermediates = {});

// A self-signed leaf for `name`, trusted by nobody.
ServedChain make_self_signed(const std::string& name);

// How the forger changes the real certificate. Defaults: the July 2019 recipe.
struct ForgeRecipe {
  std::chrono::seconds validity_shift{-6 * 3600};  // both notBefore and notAfter
  int serial_low_bits_replaced = 32;                // at random
  enum class Extensions {
    san_only,    // only the copied subjectAltName survives
    fixed_2019,  // SKI, AKI, CA:FALSE, digitalSignature+keyEncipherment, serverAuth+clientAuth, copied SAN
    keep_all,    // every extension but the key identifiers, which are remade
  } extensions = Extensions::san_only;
};

// A certificate with the real one's subject, names and (shifted) validity,
// a new key, and signed by `forger`.
tls::X509Ptr forge_like(X509* real, EVP_PKEY* new_key, const Authority& forger, const ForgeRecipe& recipe = {});

}  // namespace mw::certs
