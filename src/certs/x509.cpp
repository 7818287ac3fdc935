#include "certs/x509.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>

namespace mw::certs {

std::string hex(const unsigned char* data, size_t len) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (size_t i = 0; i < len; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 0xf];
  }
  return out;
}

std::string sha256_hex(const Der& bytes) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(bytes.data(), bytes.size(), md);
  return hex(md, sizeof md);
}

Der to_der(X509* cert) {
  int len = i2d_X509(cert, nullptr);
  if (len <= 0) return {};
  Der out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  i2d_X509(cert, &p);
  return out;
}

tl::expected<tls::X509Ptr, std::string> from_der(const Der& der) {
  const unsigned char* p = der.data();
  tls::X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return tl::unexpected("not a DER certificate: " + tls::drain_errors());
  return cert;
}

std::string cert_sha256(X509* cert) { return sha256_hex(to_der(cert)); }

std::string spki_sha256(X509* cert) {
  X509_PUBKEY* pub = X509_get_X509_PUBKEY(cert);
  int len = i2d_X509_PUBKEY(pub, nullptr);
  if (len <= 0) return {};
  Der spki(static_cast<size_t>(len));
  unsigned char* p = spki.data();
  i2d_X509_PUBKEY(pub, &p);
  return sha256_hex(spki);
}

std::string name_text(const X509_NAME* name) {
  tls::BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string subject_text(X509* cert) { return name_text(X509_get_subject_name(cert)); }
std::string issuer_text(X509* cert) { return name_text(X509_get_issuer_name(cert)); }

std::vector<std::string> dns_names(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != GEN_DNS) continue;
    const ASN1_IA5STRING* s = gn->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

tl::expected<std::vector<tls::X509Ptr>, std::string> parse_pem(std::string_view pem) {
  tls::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<tls::X509Ptr> out;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(cert);
  ERR_clear_error();  // the last read always fails with "no start line"
  if (out.empty()) return tl::unexpected(std::string("no PEM certificate found"));
  return out;
}

tl::expected<std::vector<tls::X509Ptr>, std::string> read_pem_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return tl::unexpected(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  auto certs = parse_pem(ss.str());
  if (!certs) return tl::unexpected(path + ": " + certs.error());
  return certs;
}

std::string to_pem(X509* cert) {
  tls::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string key_to_pem(EVP_PKEY* key) {
  tls::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

tl::expected<tls::EvpPkeyPtr, std::string> read_key_pem_file(const std::string& path) {
  tls::BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) return tl::unexpected(path + ": cannot open file");
  tls::EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return tl::unexpected(path + ": not a PEM private key");
  return key;
}

std::string base64(const Der& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

tl::expected<Der, std::string> unbase64(std::string_view text) {
  if (text.size() % 4 != 0) return tl::unexpected(std::string("base64 length is not a multiple of 4"));
  Der out(text.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return tl::unexpected(std::string("invalid base64"));
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace mw::certs
