#include "certs/issue.hpp"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

namespace mw::certs {
namespace {

// Key and certificate generation fail only when OpenSSL itself is broken
// (out of memory); that is a programming-environment error, not an input error.
void require(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string(what) + ": " + tls::drain_errors());
}

X509_NAME* build_name(const NameParts& parts) {
  X509_NAME* name = X509_NAME_new();
  for (const auto& [field, value] : parts)
    require(X509_NAME_add_entry_by_txt(name, field.c_str(), MBSTRING_UTF8,
                                       reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) == 1,
            "X509_NAME_add_entry_by_txt");
  return name;
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  require(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

void set_serial(X509* cert, const std::vector<unsigned char>& bytes) {
  BIGNUM* bn = BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
  BN_free(bn);
}

}  // namespace

tls::EvpPkeyPtr make_ec_p256_key() {
  tls::EvpPkeyPtr key(EVP_EC_gen("P-256"));
  require(key != nullptr, "EVP_EC_gen");
  return key;
}

tls::EvpPkeyPtr make_rsa_key(int bits, unsigned long exponent) {
  std::unique_ptr<EVP_PKEY_CTX, tls::Deleter<EVP_PKEY_CTX_free>> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nullptr));
  require(ctx && EVP_PKEY_keygen_init(ctx.get()) == 1, "EVP_PKEY_keygen_init");
  require(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), bits) == 1, "set_rsa_keygen_bits");
  BIGNUM* e = BN_new();
  BN_set_word(e, exponent);
  require(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx.get(), e) == 1, "set_rsa_keygen_pubexp");
  BN_free(e);
  EVP_PKEY* key = nullptr;
  require(EVP_PKEY_keygen(ctx.get(), &key) == 1, "EVP_PKEY_keygen");
  return tls::EvpPkeyPtr(key);
}

tls::X509Ptr issue(const CertSpec& spec, EVP_PKEY* subject_key, const Authority* issuer) {
  tls::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  std::vector<unsigned char> serial = spec.serial;
  if (serial.empty()) {
    serial.resize(16);
    RAND_bytes(serial.data(), static_cast<int>(serial.size()));
    serial[0] &= 0x7f;  // positive
    serial[0] |= 0x10;  // and a fixed length
  }
  set_serial(cert.get(), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(spec.not_before_offset.count()));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(spec.not_after_offset.count()));
  X509_NAME* subject = build_name(spec.subject);
  X509_set_subject_name(cert.get(), subject);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer->cert.get()) : subject);
  X509_NAME_free(subject);
  X509_set_pubkey(cert.get(), subject_key);
  X509* issuer_cert = issuer ? issuer->cert.get() : nullptr;
  if (spec.is_ca) {
    add_ext(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), issuer_cert, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add_ext(cert.get(), issuer_cert, NID_ext_key_usage, "serverAuth");
  }
  add_ext(cert.get(), issuer_cert, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always");
  if (!spec.dns_names.empty()) {
    std::string san;
    for (const auto& n : spec.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
    add_ext(cert.get(), issuer_cert, NID_subject_alt_name, san);
  }
  if (spec.padding_extension_bytes > 0) {
    // An unregistered private OID holding opaque bytes: only its size matters.
    ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.4.1.55555.1", 1);
    ASN1_OCTET_STRING* data = ASN1_OCTET_STRING_new();
    std::string filler(spec.padding_extension_bytes, 'x');
    ASN1_OCTET_STRING_set(data, reinterpret_cast<const unsigned char*>(filler.data()), static_cast<int>(filler.size()));
    X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, oid, 0, data);
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(data);
    ASN1_OBJECT_free(oid);
  }
  EVP_PKEY* signer = issuer ? issuer->key.get() : subject_key;
  require(X509_sign(cert.get(), signer, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

Authority make_root(const NameParts& subject, tls::EvpPkeyPtr key) {
  if (!key) key = make_ec_p256_key();
  CertSpec spec;
  spec.subject = subject;
  spec.is_ca = true;
  spec.not_before_offset = std::chrono::seconds(-86400);
  spec.not_after_offset = std::chrono::seconds(10LL * 365 * 86400);
  auto cert = issue(spec, key.get(), nullptr);
  return {std::move(cert), std::move(key)};
}

Authority make_intermediate(const Authority& parent, const NameParts& subject, tls::EvpPkeyPtr key) {
  if (!key) key = make_ec_p256_key();
  CertSpec spec;
  spec.subject = subject;
  spec.is_ca = true;
  spec.not_before_offset = std::chrono::seconds(-86400);
  spec.not_after_offset = std::chrono::seconds(3LL * 365 * 86400);
  auto cert = issue(spec, key.get(), &parent);
  return {std::move(cert), std::move(key)};
}

ServedChain make_leaf(const Authority& ca, const std::vector<std::string>& dns_names,
                      const std::vector<const Authority*>& intermediates) {
  ServedChain chain;
  chain.key = make_ec_p256_key();
  CertSpec spec;
  spec.subject = {{"CN", dns_names.empty() ? std::string("localhost") : dns_names.front()}};
  spec.dns_names = dns_names;
  chain.leaf = issue(spec, chain.key.get(), &ca);
  for (const Authority* a : intermediates) chain.intermediates.push_back(tls::share(a->cert.get()));
  return chain;
}

ServedChain make_self_signed(const std::string& name) {
  ServedChain chain;
  chain.key = make_ec_p256_key();
  CertSpec spec;
  spec.subject = {{"CN", name}};
  spec.dns_names = {name};
  chain.leaf = issue(spec, chain.key.get(), nullptr);
  return chain;
}

tls::X509Ptr forge_like(X509* real, EVP_PKEY* new_key, const Authority& forger, const ForgeRecipe& recipe) {
  tls::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  // Serial: the real one with its low bits replaced at random.
  const ASN1_INTEGER* real_serial = X509_get0_serialNumber(real);
  std::vector<unsigned char> serial(ASN1_STRING_get0_data(real_serial),
                                    ASN1_STRING_get0_data(real_serial) + ASN1_STRING_length(real_serial));
  int bits = std::clamp(recipe.serial_low_bits_replaced, 0, static_cast<int>(serial.size() * 8));
  for (int b = 0; b < bits; ++b) {
    size_t byte = serial.size() - 1 - static_cast<size_t>(b / 8);
    unsigned char mask = static_cast<unsigned char>(1u << (b % 8));
    unsigned char coin = 0;
    RAND_bytes(&coin, 1);
    serial[byte] = static_cast<unsigned char>((serial[byte] & ~mask) | ((coin & 1) ? mask : 0));
  }
  if (!serial.empty()) serial[0] &= 0x7f;  // stays positive
  set_serial(cert.get(), serial);
  // Validity: the real one, shifted.
  time_t shift = static_cast<time_t>(recipe.validity_shift.count());
  time_t nb = 0, na = 0;
  {
    struct tm t {};
    ASN1_TIME_to_tm(X509_get0_notBefore(real), &t);
    nb = timegm(&t);
    ASN1_TIME_to_tm(X509_get0_notAfter(real), &t);
    na = timegm(&t);
  }
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), nb + shift);
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), na + shift);
  X509_set_subject_name(cert.get(), X509_get_subject_name(real));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(forger.cert.get()));
  X509_set_pubkey(cert.get(), new_key);
  using Ext = ForgeRecipe::Extensions;
  X509* issuer_cert = forger.cert.get();
  if (recipe.extensions == Ext::fixed_2019) {
    add_ext(cert.get(), issuer_cert, NID_subject_key_identifier, "hash");
    add_ext(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always");
    add_ext(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), issuer_cert, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add_ext(cert.get(), issuer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  for (int i = 0; i < X509_get_ext_count(real); ++i) {
    X509_EXTENSION* ext = X509_get_ext(real, i);
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    bool keep = recipe.extensions == Ext::keep_all
                    ? (nid != NID_subject_key_identifier && nid != NID_authority_key_identifier)
                    : nid == NID_subject_alt_name;
    if (keep) X509_add_ext(cert.get(), ext, -1);
  }
  if (recipe.extensions == Ext::keep_all) {
    add_ext(cert.get(), issuer_cert, NID_subject_key_identifier, "hash");
    add_ext(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always");
  }
  require(X509_sign(cert.get(), forger.key.get(), EVP_sha256()) > 0, "X509_sign (forge)");
  return cert;
}

}  // namespace mw::certs
