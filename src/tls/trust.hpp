// A root store shared by every probe, and chain verification against it.
#pragma once

#include "tls/ossl.hpp"

#include <tl/expected.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mw::tls {

struct TrustResult {
  bool trusted = false;
  std::string verify_error;         // empty when trusted
  std::optional<bool> name_match;   // leaf names vs the SNI; nullopt without SNI
};

// Remembers chain verdicts within one scan: a clean host shows its control
// and every test the same chain, and X509_verify_cert is a large part of a
// handshake's cost. Keyed by SHA-256 of the whole chain; bounded.
class VerifyCache {
 public:
  explicit VerifyCache(size_t capacity = 16384) : capacity_(capacity) {}
  const std::pair<bool, std::string>* find(const std::string& key) const;
  void put(std::string key, bool trusted, std::string error);
  size_t hits() const { return hits_; }

 private:
  size_t capacity_;
  std::unordered_map<std::string, std::pair<bool, std::string>> entries_;
  mutable size_t hits_ = 0;
};

class TrustStore {
 public:
  // Debian's Mozilla bundle (ca-certificates).
  static constexpr const char* kSystemBundle = "/etc/ssl/certs/ca-certificates.crt";

  static tl::expected<TrustStore, std::string> from_file(const std::string& path);
  static tl::expected<TrustStore, std::string> from_dir(const std::string& path);
  static TrustStore empty();
  void add(X509* root);

  // Never fails: the outcome is a recorded fact, not an error.
  TrustResult verify(const std::vector<X509*>& chain, std::string_view sni, VerifyCache* cache = nullptr) const;
  X509_STORE* get() const { return store_.get(); }

 private:
  X509StorePtr store_;
};

}  // namespace mw::tls
