// A root store shared by every probe, and chain verification against it.
#pragma once

#include "tls/ossl.hpp"

#include <tl/expected.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mw::tls {

struct TrustResult {
  bool trusted = false;
  std::string verify_error;         // empty when trusted
  std::optional<bool> name_match;   // leaf names vs the SNI; nullopt without SNI
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
  TrustResult verify(const std::vector<X509*>& chain, std::string_view sni) const;
  X509_STORE* get() const { return store_.get(); }

 private:
  X509StorePtr store_;
};

}  // namespace mw::tls
