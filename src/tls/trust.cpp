#include "tls/trust.hpp"

#include "certs/x509.hpp"

#include <openssl/err.h>

#include <filesystem>

namespace mw::tls {

TrustStore TrustStore::empty() {
  TrustStore t;
  t.store_.reset(X509_STORE_new());
  return t;
}

tl::expected<TrustStore, std::string> TrustStore::from_file(const std::string& path) {
  auto certs = certs::read_pem_file(path);
  if (!certs) return tl::unexpected("CA file " + certs.error());
  TrustStore t = empty();
  for (auto& c : *certs) t.add(c.get());
  return t;
}

tl::expected<TrustStore, std::string> TrustStore::from_dir(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return tl::unexpected("CA directory " + path + ": not a directory");
  TrustStore t = empty();
  size_t loaded = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    if (!entry.is_regular_file()) continue;
    auto certs = certs::read_pem_file(entry.path().string());
    if (!certs) continue;  // c_rehash folders hold other files too
    for (auto& c : *certs) t.add(c.get());
    ++loaded;
  }
  if (ec || loaded == 0) return tl::unexpected("CA directory " + path + ": no PEM certificates found");
  return t;
}

void TrustStore::add(X509* root) {
  X509_STORE_add_cert(store_.get(), root);
  ERR_clear_error();  // duplicates are harmless
}

const std::pair<bool, std::string>* VerifyCache::find(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  ++hits_;
  return &it->second;
}

void VerifyCache::put(std::string key, bool trusted, std::string error) {
  if (entries_.size() >= capacity_) entries_.clear();  // crude, bounded, and rare
  entries_.emplace(std::move(key), std::make_pair(trusted, std::move(error)));
}

namespace {

std::string chain_key(const std::vector<X509*>& chain) {
  // X509_digest uses the cached DER encoding of each parsed certificate.
  std::string key;
  for (X509* c : chain) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    X509_digest(c, EVP_sha256(), md, &len);
    key.append(reinterpret_cast<const char*>(md), len);
  }
  return key;
}

}  // namespace

TrustResult TrustStore::verify(const std::vector<X509*>& chain, std::string_view sni, VerifyCache* cache) const {
  TrustResult result;
  if (chain.empty()) {
    result.verify_error = "no certificate";
    return result;
  }
  if (!sni.empty()) result.name_match = X509_check_host(chain[0], sni.data(), sni.size(), 0, nullptr) == 1;
  std::string key;
  if (cache) {
    key = chain_key(chain);
    if (const auto* hit = cache->find(key)) {
      result.trusted = hit->first;
      result.verify_error = hit->second;
      return result;
    }
  }
  X509StackPtr untrusted(sk_X509_new_null());
  for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i]);  // borrowed, not owned
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store_.get(), chain[0], untrusted.get());
  result.trusted = X509_verify_cert(ctx.get()) == 1;
  if (!result.trusted) result.verify_error = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
  ctx.reset();
  // Release the borrowed pointers without freeing them.
  while (sk_X509_num(untrusted.get()) > 0) sk_X509_pop(untrusted.get());
  ERR_clear_error();
  if (cache) cache->put(std::move(key), result.trusted, result.verify_error);
  return result;
}

}  // namespace mw::tls
