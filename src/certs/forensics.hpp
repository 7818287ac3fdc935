// Forensics of forged certificates: what an interceptor changed between the
// real chain and its forgery (`diff`), the rules that held over many pairs
// (`infer_recipes`, one per interception system), and a structural
// fingerprint of a certificate's shape that survives new names and keys.
#pragma once

#include "certs/registry.hpp"
#include "tls/ossl.hpp"
#include "tls/trust.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace mw::certs {

struct KeyFacts {
  std::string algorithm;  // "RSA", "EC", ...
  int bits = 0;
  std::optional<uint64_t> rsa_exponent;
  std::string spki_sha256;
};

struct ExtensionId {
  std::string oid;
  std::string name;  // OpenSSL's short name, or the OID
};

struct CertFacts {
  std::string subject, issuer;
  std::vector<std::string> dns_names;
  KeyFacts key;
  int64_t not_before = 0, not_after = 0;  // Unix seconds
  std::vector<unsigned char> serial;
  std::string signature_algorithm;
  std::vector<ExtensionId> extensions;  // in order
  std::string shape;                    // shape_fingerprint()
};

CertFacts facts_of(X509* cert);
KeyFacts key_facts(X509* cert);

// A structural fingerprint of a certificate's shape: issuer and subject
// attribute types, extension OIDs in order, key type and size, signature
// algorithm. Our own design in JA4X's spirit (JA4X is FoxIO License 1.1).
// "mwx1_<12 hex of SHA-256 of the raw shape>".
std::string shape_fingerprint(X509* cert);
std::string shape_raw(X509* cert);

struct SerialDiff {
  size_t real_length = 0, forged_length = 0;
  size_t common_leading_bytes = 0;
  // With equal lengths: the highest differing bit, counted from the lowest
  // (33 means "at most the low 33 bits differ"); 0 when equal.
  std::optional<int> low_bits_differing;
};

struct ExtensionDiff {
  std::vector<ExtensionId> kept_same, kept_changed, dropped, added;
};

struct ChainReport {
  std::vector<CertFacts> certs;
  bool trusted = false;
  std::string verify_error;
  std::optional<InterceptorHit> interceptor;
};

struct CertDiff {
  CertFacts real, forged;
  bool subject_equal = false;
  std::vector<std::string> names_only_real, names_only_forged;  // subjectAltName DNS entries
  bool key_replaced = false;
  int64_t not_before_shift = 0, not_after_shift = 0;  // forged - real, seconds
  SerialDiff serial;
  ExtensionDiff extensions;
  ChainReport real_chain, forged_chain;
  std::vector<std::string> forged_lints;
};

struct Chain {
  std::vector<tls::X509Ref> certs;  // leaf first
};

CertDiff diff(const Chain& real, const Chain& forged, const tls::TrustStore& trust,
              const InterceptorRegistry& registry);
std::vector<std::string> lints(const CertFacts& leaf, bool claims_public);

nlohmann::ordered_json to_json(const CertDiff& d);
std::string to_text(const CertDiff& d);

// One (real, forged) pair with the host it came from.
struct Pair {
  std::string host;
  CertDiff diff;
};

// The rules that held for every pair of one interception system. A rule
// absent (nullopt / empty) did not hold for all of them.
struct Recipe {
  std::string name;            // "issuer | shape"
  std::string forged_issuer;
  std::string forged_shape;
  size_t pairs = 0;
  size_t hosts = 0;
  bool names_copied = false;   // subject and SANs equal the real leaf's
  bool key_replaced = false;
  std::optional<std::string> key_algorithm;
  std::optional<int> key_bits;
  std::optional<uint64_t> rsa_exponent;
  std::optional<bool> key_per_host;  // one key per host, reused for it, never shared
  std::optional<int64_t> validity_shift;  // both ends, every pair
  std::optional<int> serial_low_bits;     // at most this many low bits differ
  std::optional<std::vector<std::string>> extension_oids;  // the forged set, in order
  std::vector<std::string> issuer_chain;  // forged leaf's issuer upward
};

std::vector<Recipe> infer_recipes(const std::vector<Pair>& pairs);
nlohmann::ordered_json to_json(const Recipe& r);
std::optional<Recipe> recipe_from_json(const nlohmann::json& j);
std::string to_text(const Recipe& r);

// Does a certificate look like this system's forgeries, whatever its issuer?
// Returns the rules it breaks (empty: it matches).
std::vector<std::string> recipe_mismatches(const Recipe& r, X509* forged_leaf);

}  // namespace mw::certs
