#include "certs/forensics.hpp"

#include "certs/x509.hpp"

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/sha.h>

#include <algorithm>
#include <map>
#include <set>

namespace mw::certs {
namespace {

int64_t unix_time(const ASN1_TIME* t) {
  struct tm tm {};
  ASN1_TIME_to_tm(t, &tm);
  return static_cast<int64_t>(timegm(&tm));
}

std::string oid_text(const ASN1_OBJECT* obj) {
  char buf[128];
  OBJ_obj2txt(buf, sizeof buf, obj, 1);
  return buf;
}

std::string name_types(const X509_NAME* name) {
  std::string out;
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const ASN1_OBJECT* obj = X509_NAME_ENTRY_get_object(X509_NAME_get_entry(name, i));
    int nid = OBJ_obj2nid(obj);
    out += (i ? "." : "") + std::string(nid != NID_undef ? OBJ_nid2sn(nid) : oid_text(obj));
  }
  return out;
}

Der extension_value(X509* cert, const std::string& oid) {
  for (int i = 0; i < X509_get_ext_count(cert); ++i) {
    X509_EXTENSION* ext = X509_get_ext(cert, i);
    if (oid_text(X509_EXTENSION_get_object(ext)) != oid) continue;
    const ASN1_OCTET_STRING* v = X509_EXTENSION_get_data(ext);
    return Der(ASN1_STRING_get0_data(v), ASN1_STRING_get0_data(v) + ASN1_STRING_length(v));
  }
  return {};
}

std::string fmt_shift(int64_t s) {
  if (s == 0) return "0 s";
  std::string sign = s < 0 ? "-" : "+";
  int64_t a = std::llabs(s);
  if (a % 3600 == 0) return fmt::format("{}{} h ({}{} s)", sign, a / 3600, sign, a);
  return fmt::format("{}{} s", sign, a);
}

}  // namespace

KeyFacts key_facts(X509* cert) {
  KeyFacts k;
  EVP_PKEY* key = X509_get0_pubkey(cert);
  if (!key) return k;
  k.algorithm = EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "unknown";
  k.bits = EVP_PKEY_get_bits(key);
  BIGNUM* e = nullptr;
  if (EVP_PKEY_get_bn_param(key, "e", &e) == 1) {
    k.rsa_exponent = BN_get_word(e);
    BN_free(e);
  }
  k.spki_sha256 = spki_sha256(cert);
  return k;
}

std::string shape_raw(X509* cert) {
  std::string exts;
  for (int i = 0; i < X509_get_ext_count(cert); ++i)
    exts += (i ? "," : "") + oid_text(X509_EXTENSION_get_object(X509_get_ext(cert, i)));
  KeyFacts k = key_facts(cert);
  return fmt::format("issuer={}|subject={}|ext={}|key={}{}|sig={}", name_types(X509_get_issuer_name(cert)),
                     name_types(X509_get_subject_name(cert)), exts, k.algorithm, k.bits,
                     OBJ_nid2sn(X509_get_signature_nid(cert)));
}

std::string shape_fingerprint(X509* cert) {
  std::string raw = shape_raw(cert);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(raw.data()), raw.size(), md);
  return "mwx1_" + hex(md, 6);
}

CertFacts facts_of(X509* cert) {
  CertFacts f;
  f.subject = subject_text(cert);
  f.issuer = issuer_text(cert);
  f.dns_names = dns_names(cert);
  f.key = key_facts(cert);
  f.not_before = unix_time(X509_get0_notBefore(cert));
  f.not_after = unix_time(X509_get0_notAfter(cert));
  const ASN1_INTEGER* s = X509_get0_serialNumber(cert);
  f.serial.assign(ASN1_STRING_get0_data(s), ASN1_STRING_get0_data(s) + ASN1_STRING_length(s));
  f.signature_algorithm = OBJ_nid2ln(X509_get_signature_nid(cert));
  for (int i = 0; i < X509_get_ext_count(cert); ++i) {
    const ASN1_OBJECT* obj = X509_EXTENSION_get_object(X509_get_ext(cert, i));
    int nid = OBJ_obj2nid(obj);
    f.extensions.push_back({oid_text(obj), nid != NID_undef ? OBJ_nid2sn(nid) : oid_text(obj)});
  }
  f.shape = shape_fingerprint(cert);
  return f;
}

std::vector<std::string> lints(const CertFacts& leaf, bool claims_public) {
  std::vector<std::string> out;
  if (leaf.key.rsa_exponent && *leaf.key.rsa_exponent < 65537)
    out.push_back(fmt::format("RSA public exponent {} < 65537", *leaf.key.rsa_exponent));
  if (leaf.key.algorithm == "RSA" && leaf.key.bits < 2048) out.push_back(fmt::format("RSA key of {} bits < 2048", leaf.key.bits));
  if (claims_public) {
    auto has = [&](const char* sn) {
      return std::any_of(leaf.extensions.begin(), leaf.extensions.end(), [&](const ExtensionId& e) { return e.name == sn; });
    };
    if (!has("authorityInfoAccess")) out.push_back("no authorityInfoAccess on a leaf standing in for a public one");
    if (!has("certificatePolicies")) out.push_back("no certificatePolicies on a leaf standing in for a public one");
  }
  return out;
}

namespace {

ChainReport chain_report(const Chain& chain, const tls::TrustStore& trust, const InterceptorRegistry& registry) {
  ChainReport r;
  std::vector<X509*> raw;
  for (const auto& c : chain.certs) {
    raw.push_back(c.get());
    r.certs.push_back(facts_of(c.get()));
  }
  auto t = trust.verify(raw, "");
  r.trusted = t.trusted;
  r.verify_error = t.verify_error;
  r.interceptor = registry.match(raw);
  return r;
}

}  // namespace

CertDiff diff(const Chain& real, const Chain& forged, const tls::TrustStore& trust, const InterceptorRegistry& registry) {
  CertDiff d;
  X509* r = real.certs.front().get();
  X509* f = forged.certs.front().get();
  d.real = facts_of(r);
  d.forged = facts_of(f);
  d.subject_equal = X509_NAME_cmp(X509_get_subject_name(r), X509_get_subject_name(f)) == 0;
  std::set<std::string> rn(d.real.dns_names.begin(), d.real.dns_names.end()),
      fn(d.forged.dns_names.begin(), d.forged.dns_names.end());
  std::set_difference(rn.begin(), rn.end(), fn.begin(), fn.end(), std::back_inserter(d.names_only_real));
  std::set_difference(fn.begin(), fn.end(), rn.begin(), rn.end(), std::back_inserter(d.names_only_forged));
  d.key_replaced = d.real.key.spki_sha256 != d.forged.key.spki_sha256;
  d.not_before_shift = d.forged.not_before - d.real.not_before;
  d.not_after_shift = d.forged.not_after - d.real.not_after;
  // Serial.
  auto& a = d.real.serial;
  auto& b = d.forged.serial;
  d.serial.real_length = a.size();
  d.serial.forged_length = b.size();
  while (d.serial.common_leading_bytes < std::min(a.size(), b.size()) &&
         a[d.serial.common_leading_bytes] == b[d.serial.common_leading_bytes])
    ++d.serial.common_leading_bytes;
  if (a.size() == b.size()) {
    int highest = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      unsigned char x = a[i] ^ b[i];
      if (!x) continue;
      int top = 7;
      while (!(x & (1u << top))) --top;
      highest = static_cast<int>((a.size() - 1 - i) * 8) + top + 1;
      break;
    }
    d.serial.low_bits_differing = highest;
  }
  // Extensions by OID.
  std::map<std::string, ExtensionId> real_ext, forged_ext;
  for (const auto& e : d.real.extensions) real_ext[e.oid] = e;
  for (const auto& e : d.forged.extensions) forged_ext[e.oid] = e;
  for (const auto& e : d.real.extensions) {
    if (!forged_ext.count(e.oid)) d.extensions.dropped.push_back(e);
    else if (extension_value(r, e.oid) == extension_value(f, e.oid)) d.extensions.kept_same.push_back(e);
    else d.extensions.kept_changed.push_back(e);
  }
  for (const auto& e : d.forged.extensions)
    if (!real_ext.count(e.oid)) d.extensions.added.push_back(e);
  d.real_chain = chain_report(real, trust, registry);
  d.forged_chain = chain_report(forged, trust, registry);
  d.forged_lints = lints(d.forged, d.real_chain.trusted);
  return d;
}

namespace {

nlohmann::ordered_json ext_list(const std::vector<ExtensionId>& v) {
  auto out = nlohmann::ordered_json::array();
  for (const auto& e : v) out.push_back({{"name", e.name}, {"oid", e.oid}});
  return out;
}

nlohmann::ordered_json key_json(const KeyFacts& k) {
  nlohmann::ordered_json j = {{"algorithm", k.algorithm}, {"bits", k.bits}};
  j["rsa_exponent"] = k.rsa_exponent ? nlohmann::ordered_json(*k.rsa_exponent) : nlohmann::ordered_json(nullptr);
  j["spki_sha256"] = k.spki_sha256;
  return j;
}

nlohmann::ordered_json chain_json(const ChainReport& c) {
  auto certs = nlohmann::ordered_json::array();
  for (const auto& f : c.certs)
    certs.push_back({{"subject", f.subject}, {"issuer", f.issuer}, {"key", key_json(f.key)},
                     {"not_before", f.not_before}, {"not_after", f.not_after}, {"shape", f.shape}});
  return {{"certificates", certs},
          {"trusted", c.trusted},
          {"verify_error", c.verify_error.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(c.verify_error)},
          {"interceptor", c.interceptor ? nlohmann::ordered_json{{"name", c.interceptor->name}, {"how", c.interceptor->how}}
                                        : nlohmann::ordered_json(nullptr)}};
}

}  // namespace

nlohmann::ordered_json to_json(const CertDiff& d) {
  nlohmann::ordered_json serial = {{"real", hex(d.real.serial.data(), d.real.serial.size())},
                                   {"forged", hex(d.forged.serial.data(), d.forged.serial.size())},
                                   {"common_leading_bytes", d.serial.common_leading_bytes}};
  serial["low_bits_differing"] =
      d.serial.low_bits_differing ? nlohmann::ordered_json(*d.serial.low_bits_differing) : nlohmann::ordered_json(nullptr);
  return {{"schema", "mitmwatch.certdiff/1"},
          {"subject", {{"equal", d.subject_equal}, {"real", d.real.subject}, {"forged", d.forged.subject}}},
          {"subject_alt_names",
           {{"equal", d.names_only_real.empty() && d.names_only_forged.empty()},
            {"only_real", d.names_only_real},
            {"only_forged", d.names_only_forged}}},
          {"key", {{"replaced", d.key_replaced}, {"real", key_json(d.real.key)}, {"forged", key_json(d.forged.key)}}},
          {"validity",
           {{"not_before_shift", d.not_before_shift},
            {"not_after_shift", d.not_after_shift},
            {"same_shift", d.not_before_shift == d.not_after_shift},
            {"forged_lifetime", d.forged.not_after - d.forged.not_before}}},
          {"serial", serial},
          {"extensions",
           {{"kept_same", ext_list(d.extensions.kept_same)},
            {"kept_changed", ext_list(d.extensions.kept_changed)},
            {"dropped", ext_list(d.extensions.dropped)},
            {"added", ext_list(d.extensions.added)}}},
          {"signature_algorithm", {{"real", d.real.signature_algorithm}, {"forged", d.forged.signature_algorithm}}},
          {"shape", {{"real", d.real.shape}, {"forged", d.forged.shape}}},
          {"real_chain", chain_json(d.real_chain)},
          {"forged_chain", chain_json(d.forged_chain)},
          {"forged_lints", d.forged_lints}};
}

std::string to_text(const CertDiff& d) {
  std::string out;
  auto line = [&](const std::string& s) { out += s + "\n"; };
  auto names = [](const std::vector<ExtensionId>& v) {
    std::string s;
    for (const auto& e : v) s += (s.empty() ? "" : ", ") + e.name;
    return s.empty() ? std::string("none") : s;
  };
  auto key = [](const KeyFacts& k) {
    return fmt::format("{} {}{}", k.algorithm, k.bits, k.rsa_exponent ? fmt::format(" e={}", *k.rsa_exponent) : "");
  };
  line(fmt::format("subject      {}  ({} / {})", d.subject_equal ? "copied" : "changed", d.real.subject, d.forged.subject));
  line(fmt::format("SAN          {}", d.names_only_real.empty() && d.names_only_forged.empty()
                                          ? fmt::format("copied ({} names)", d.real.dns_names.size())
                                          : fmt::format("changed: only real [{}], only forged [{}]",
                                                        fmt::join(d.names_only_real, " "), fmt::join(d.names_only_forged, " "))));
  line(fmt::format("key          {}: {} -> {}", d.key_replaced ? "replaced" : "kept", key(d.real.key), key(d.forged.key)));
  line(fmt::format("validity     notBefore {}, notAfter {}{}", fmt_shift(d.not_before_shift), fmt_shift(d.not_after_shift),
                   d.not_before_shift == d.not_after_shift ? " (same shift)" : " (different shifts)"));
  line(fmt::format("serial       {} common leading bytes of {}/{}{}", d.serial.common_leading_bytes, d.serial.real_length,
                   d.serial.forged_length,
                   d.serial.low_bits_differing ? fmt::format("; low {} bits differ", *d.serial.low_bits_differing) : ""));
  line(fmt::format("extensions   kept: {}; changed: {}; dropped: {}; added: {}", names(d.extensions.kept_same),
                   names(d.extensions.kept_changed), names(d.extensions.dropped), names(d.extensions.added)));
  line(fmt::format("signature    {} -> {}", d.real.signature_algorithm, d.forged.signature_algorithm));
  line(fmt::format("shape        {} -> {}", d.real.shape, d.forged.shape));
  for (const auto* c : {&d.real_chain, &d.forged_chain}) {
    line(fmt::format("{} chain   {}{}", c == &d.real_chain ? "real  " : "forged",
                     c->trusted ? "trusted" : "untrusted (" + c->verify_error + ")",
                     c->interceptor ? fmt::format("; known interceptor '{}' ({})", c->interceptor->name, c->interceptor->how) : ""));
    for (const auto& f : c->certs) line(fmt::format("    {}  [{}]  issued by {}", f.subject, key(f.key), f.issuer));
  }
  for (const auto& l : d.forged_lints) line("lint         " + l);
  return out;
}

std::vector<Recipe> infer_recipes(const std::vector<Pair>& pairs) {
  std::map<std::string, std::vector<const Pair*>> clusters;  // by forged issuer and shape
  for (const auto& p : pairs) clusters[p.diff.forged.issuer + " | " + p.diff.forged.shape].push_back(&p);
  std::vector<Recipe> out;
  for (const auto& [name, members] : clusters) {
    Recipe r;
    r.name = name;
    const CertDiff& first = members.front()->diff;
    r.forged_issuer = first.forged.issuer;
    r.forged_shape = first.forged.shape;
    r.pairs = members.size();
    r.names_copied = r.key_replaced = true;
    r.key_algorithm = first.forged.key.algorithm;
    r.key_bits = first.forged.key.bits;
    r.rsa_exponent = first.forged.key.rsa_exponent;
    r.validity_shift = first.not_before_shift;
    r.serial_low_bits = 0;
    std::vector<std::string> oids;
    for (const auto& e : first.forged.extensions) oids.push_back(e.oid);
    r.extension_oids = oids;
    for (const auto& c : first.forged_chain.certs) r.issuer_chain.push_back(c.issuer);
    std::map<std::string, std::set<std::string>> keys_by_host, hosts_by_key;
    for (const Pair* p : members) {
      const CertDiff& d = p->diff;
      r.names_copied = r.names_copied && d.subject_equal && d.names_only_real.empty() && d.names_only_forged.empty();
      r.key_replaced = r.key_replaced && d.key_replaced;
      if (r.key_algorithm && *r.key_algorithm != d.forged.key.algorithm) r.key_algorithm.reset();
      if (r.key_bits && *r.key_bits != d.forged.key.bits) r.key_bits.reset();
      if (r.rsa_exponent != d.forged.key.rsa_exponent) r.rsa_exponent.reset();
      if (r.validity_shift && (d.not_before_shift != *r.validity_shift || d.not_after_shift != *r.validity_shift))
        r.validity_shift.reset();
      if (r.serial_low_bits) {
        if (!d.serial.low_bits_differing || d.serial.common_leading_bytes == 0) r.serial_low_bits.reset();
        else r.serial_low_bits = std::max(*r.serial_low_bits, *d.serial.low_bits_differing);
      }
      std::vector<std::string> these;
      for (const auto& e : d.forged.extensions) these.push_back(e.oid);
      if (r.extension_oids && *r.extension_oids != these) r.extension_oids.reset();
      keys_by_host[p->host].insert(d.forged.key.spki_sha256);
      hosts_by_key[d.forged.key.spki_sha256].insert(p->host);
    }
    r.hosts = keys_by_host.size();
    bool one_per_host = std::all_of(keys_by_host.begin(), keys_by_host.end(), [](auto& kv) { return kv.second.size() == 1; });
    bool unshared = std::all_of(hosts_by_key.begin(), hosts_by_key.end(), [](auto& kv) { return kv.second.size() == 1; });
    r.key_per_host = one_per_host && unshared;
    if (r.serial_low_bits && *r.serial_low_bits == 0) r.serial_low_bits.reset();
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const Recipe& a, const Recipe& b) { return a.pairs > b.pairs; });
  return out;
}

nlohmann::ordered_json to_json(const Recipe& r) {
  auto opt = [](const auto& o) { return o ? nlohmann::ordered_json(*o) : nlohmann::ordered_json(nullptr); };
  return {{"schema", "mitmwatch.recipe/1"},
          {"name", r.name},
          {"forged_issuer", r.forged_issuer},
          {"forged_shape", r.forged_shape},
          {"pairs", r.pairs},
          {"hosts", r.hosts},
          {"names_copied", r.names_copied},
          {"key_replaced", r.key_replaced},
          {"key_algorithm", opt(r.key_algorithm)},
          {"key_bits", opt(r.key_bits)},
          {"rsa_exponent", opt(r.rsa_exponent)},
          {"key_per_host", opt(r.key_per_host)},
          {"validity_shift", opt(r.validity_shift)},
          {"serial_low_bits", opt(r.serial_low_bits)},
          {"extension_oids", opt(r.extension_oids)},
          {"issuer_chain", r.issuer_chain}};
}

std::optional<Recipe> recipe_from_json(const nlohmann::json& j) {
  if (!j.is_object() || j.value("schema", "") != "mitmwatch.recipe/1") return std::nullopt;
  try {
    Recipe r;
    r.name = j.at("name").get<std::string>();
    r.forged_issuer = j.at("forged_issuer").get<std::string>();
    r.forged_shape = j.at("forged_shape").get<std::string>();
    r.pairs = j.at("pairs").get<size_t>();
    r.hosts = j.value("hosts", size_t{0});
    r.names_copied = j.at("names_copied").get<bool>();
    r.key_replaced = j.at("key_replaced").get<bool>();
    auto get = [&](const char* k, auto& field) {
      if (j.contains(k) && !j[k].is_null()) field = j[k].get<typename std::decay_t<decltype(field)>::value_type>();
    };
    get("key_algorithm", r.key_algorithm);
    get("key_bits", r.key_bits);
    get("rsa_exponent", r.rsa_exponent);
    get("key_per_host", r.key_per_host);
    get("validity_shift", r.validity_shift);
    get("serial_low_bits", r.serial_low_bits);
    get("extension_oids", r.extension_oids);
    r.issuer_chain = j.value("issuer_chain", std::vector<std::string>{});
    return r;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string to_text(const Recipe& r) {
  std::string out = fmt::format("interception system: {} forged pairs over {} hosts\n", r.pairs, r.hosts);
  auto rule = [&](bool holds, const std::string& what) { out += fmt::format("  {} {}\n", holds ? "+" : "?", what); };
  out += fmt::format("  issuer chain: {}\n", fmt::join(r.issuer_chain, "  <-  "));
  out += fmt::format("  shape: {}\n", r.forged_shape);
  rule(r.names_copied, "subject and subjectAltName copied from the real certificate");
  rule(r.key_replaced, "public key replaced");
  rule(r.key_algorithm && r.key_bits, r.key_algorithm ? fmt::format("key {} {}{}", *r.key_algorithm, r.key_bits.value_or(0),
                                                                    r.rsa_exponent ? fmt::format(" e={}", *r.rsa_exponent) : "")
                                                      : "key type varies");
  rule(r.key_per_host.value_or(false), "one key per host, reused for that host, never shared");
  rule(r.validity_shift.has_value(),
       r.validity_shift ? fmt::format("validity shifted {} at both ends", fmt_shift(*r.validity_shift)) : "validity shift varies");
  rule(r.serial_low_bits.has_value(), r.serial_low_bits ? fmt::format("serial: the real one with (at most) its low {} bits replaced", *r.serial_low_bits)
                                                        : "serial not derived from the real one");
  rule(r.extension_oids.has_value(), r.extension_oids ? fmt::format("fixed extension set: {}", fmt::join(*r.extension_oids, ", "))
                                                      : "extension set varies");
  return out;
}

std::vector<std::string> recipe_mismatches(const Recipe& r, X509* forged_leaf) {
  std::vector<std::string> why;
  // Not the shape fingerprint: it holds the issuer's name layout, and a
  // system must be recognised under a new root too.
  CertFacts f = facts_of(forged_leaf);
  if (r.key_algorithm && f.key.algorithm != *r.key_algorithm) why.push_back("key algorithm " + f.key.algorithm);
  if (r.key_bits && f.key.bits != *r.key_bits) why.push_back(fmt::format("key of {} bits", f.key.bits));
  if (r.rsa_exponent && f.key.rsa_exponent != r.rsa_exponent) why.push_back("another RSA exponent");
  if (r.extension_oids) {
    std::vector<std::string> oids;
    for (const auto& e : f.extensions) oids.push_back(e.oid);
    if (oids != *r.extension_oids) why.push_back("another extension set");
  }
  return why;
}

}  // namespace mw::certs
