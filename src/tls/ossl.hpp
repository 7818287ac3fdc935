// RAII ownership for the OpenSSL objects mitmwatch uses, and small helpers
// that turn OpenSSL's error queue into text.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <vector>

namespace mw::tls {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept { Free(p); }
};

using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using X509NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME_free>>;

inline void free_x509_stack(STACK_OF(X509)* s) { sk_X509_pop_free(s, X509_free); }
using X509StackPtr = std::unique_ptr<STACK_OF(X509), Deleter<free_x509_stack>>;

using Der = std::vector<unsigned char>;

// Drains OpenSSL's thread-local error queue into one line.
std::string drain_errors();

// Takes a new reference (OpenSSL's up_ref) so the caller owns its copy.
inline X509Ptr share(X509* cert) {
  X509_up_ref(cert);
  return X509Ptr(cert);
}
inline EvpPkeyPtr share(EVP_PKEY* key) {
  EVP_PKEY_up_ref(key);
  return EvpPkeyPtr(key);
}

// A copyable, reference-counted X509 (OpenSSL's own count, via X509_up_ref).
class X509Ref {
 public:
  X509Ref() = default;
  static X509Ref share(X509* cert) {
    X509Ref r;
    if (cert) X509_up_ref(cert);
    r.cert_ = cert;
    return r;
  }
  static X509Ref adopt(X509Ptr cert) {
    X509Ref r;
    r.cert_ = cert.release();
    return r;
  }
  X509Ref(const X509Ref& o) : cert_(o.cert_) {
    if (cert_) X509_up_ref(cert_);
  }
  X509Ref(X509Ref&& o) noexcept : cert_(o.cert_) { o.cert_ = nullptr; }
  X509Ref& operator=(X509Ref o) noexcept {
    std::swap(cert_, o.cert_);
    return *this;
  }
  ~X509Ref() {
    if (cert_) X509_free(cert_);
  }
  X509* get() const { return cert_; }

 private:
  X509* cert_ = nullptr;
};

}  // namespace mw::tls
