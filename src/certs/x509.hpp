// Plain facts read from certificates: hashes, names, and DER/PEM conversion.
#pragma once

#include "tls/ossl.hpp"

#include <tl/expected.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace mw::certs {

using tls::Der;

std::string hex(const unsigned char* data, size_t len);
std::string sha256_hex(const Der& bytes);

Der to_der(X509* cert);
tl::expected<tls::X509Ptr, std::string> from_der(const Der& der);

// SHA-256 of the DER certificate, and of its SubjectPublicKeyInfo.
std::string cert_sha256(X509* cert);
std::string spki_sha256(X509* cert);

// RFC 2253 one-line form, e.g. "CN=Security Certificate,C=KZ".
std::string name_text(const X509_NAME* name);
std::string subject_text(X509* cert);
std::string issuer_text(X509* cert);
std::vector<std::string> dns_names(X509* cert);  // subjectAltName DNS entries

// All certificates in a PEM file or string, in order.
tl::expected<std::vector<tls::X509Ptr>, std::string> read_pem_file(const std::string& path);
tl::expected<std::vector<tls::X509Ptr>, std::string> parse_pem(std::string_view pem);
std::string to_pem(X509* cert);

std::string key_to_pem(EVP_PKEY* key);  // unencrypted PKCS#8
tl::expected<tls::EvpPkeyPtr, std::string> read_key_pem_file(const std::string& path);

std::string base64(const Der& bytes);
tl::expected<Der, std::string> unbase64(std::string_view text);

}  // namespace mw::certs
