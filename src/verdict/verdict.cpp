#include "verdict/verdict.hpp"

#include "certs/x509.hpp"

#include <algorithm>
#include <set>

namespace mw::verdict {
namespace {

struct LeafFacts {
  std::string spki;
  std::string issuer;
  std::set<std::string> names;  // subject CN and DNS SANs, lower case
};

LeafFacts leaf_facts(const tls::Observation& obs) {
  LeafFacts f;
  X509* c = tls::leaf(obs);
  if (!c) return f;
  f.spki = certs::spki_sha256(c);
  f.issuer = certs::issuer_text(c);
  for (auto n : certs::dns_names(c)) {
    std::transform(n.begin(), n.end(), n.begin(), ::tolower);
    f.names.insert(n);
  }
  char cn[256];
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn) > 0) {
    std::string s(cn);
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    f.names.insert(s);
  }
  return f;
}

}  // namespace

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::clean: return "clean";
    case Verdict::intercepted: return "intercepted";
    case Verdict::blocked: return "blocked";
    case Verdict::unreachable: return "unreachable";
  }
  return "clean";
}

Comparison compare(const tls::Observation& test, const tls::Observation& control) {
  Comparison c;
  if (test.ok() && test.interceptor) {
    c.verdict = Verdict::intercepted;
    c.differs = true;
    c.reasons.push_back("chain " + test.interceptor->how + " known interceptor '" + test.interceptor->name + "'");
    return c;
  }
  if (!control.ok()) {
    c.verdict = Verdict::unreachable;
    c.reasons.push_back("control failed: " + tls::error_name(control));
    c.differs = test.ok();
    return c;
  }
  if (!test.ok()) {
    c.verdict = Verdict::blocked;
    c.differs = true;
    c.reasons.push_back("test failed: " + tls::error_name(test) + " where control succeeded");
    return c;
  }
  if (test.chain.empty() || control.chain.empty()) {
    c.reasons.push_back("no certificate to compare");
    return c;
  }
  if (test.chain.front() == control.chain.front()) {
    c.reasons.push_back("same leaf as control");
    return c;
  }
  LeafFacts t = leaf_facts(test), k = leaf_facts(control);
  bool key_replaced = t.spki != k.spki;
  bool issuer_replaced = t.issuer != k.issuer;
  bool names_kept = !t.names.empty() && t.names == k.names;
  bool names_fit_sni = test.trust.name_match.value_or(false);
  bool untrusted = !test.trust.trusted;
  // A forgery must be judged untrusted on its own merits: either the control
  // chain is trusted and the test one is not, or both are untrusted but the
  // test chain comes from a different issuer.
  bool trust_fell = untrusted && (control.trust.trusted || issuer_replaced);
  if (key_replaced && (names_kept || names_fit_sni) && trust_fell) {
    c.verdict = Verdict::intercepted;
    c.differs = true;
    c.reasons.push_back("public key replaced");
    if (issuer_replaced) c.reasons.push_back("issuer replaced: '" + k.issuer + "' -> '" + t.issuer + "'");
    c.reasons.push_back(names_kept ? "names copied from the real certificate" : "names match the test SNI");
    c.reasons.push_back("test chain not trusted: " + test.trust.verify_error);
    if (control.trust.trusted) c.reasons.push_back("control chain trusted");
    return c;
  }
  c.reasons.push_back(std::string("leaf differs from control but not as a forgery (") +
                      (key_replaced ? "key replaced" : "same key") + ", " +
                      (test.trust.trusted ? "trusted" : "untrusted") + ")");
  return c;
}

bool needs_retry(const Comparison& c) { return c.differs; }

Comparison settle(const std::vector<const tls::Observation*>& tests, const tls::Observation& final_control,
                  size_t* intercepted_attempts) {
  Comparison last;
  std::optional<Comparison> first_intercepted;
  size_t intercepted = 0;
  for (const tls::Observation* t : tests) {
    last = compare(*t, final_control);
    if (last.verdict == Verdict::intercepted) {
      ++intercepted;
      if (!first_intercepted) first_intercepted = last;
    }
  }
  if (intercepted_attempts) *intercepted_attempts = intercepted;
  if (first_intercepted && last.verdict != Verdict::intercepted) {
    Comparison c = *first_intercepted;
    c.reasons.push_back("intercepted in " + std::to_string(intercepted) + " of " + std::to_string(tests.size()) +
                        " attempts");
    return c;
  }
  return last;
}

}  // namespace mw::verdict
