// The registry of known interception roots (data/interceptors.json), and the
// test of whether a chain holds one or was signed by one.
#pragma once

#include "tls/ossl.hpp"

#include <tl/expected.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mw::certs {

struct InterceptorRoot {
  std::string name;
  std::string source;
  std::string subject;
  std::string cert_sha256;
  std::string spki_sha256;
  tls::X509Ptr cert;
};

struct InterceptorHit {
  std::string name;
  std::string source;
  // "holds-root": the chain contains the root itself; "holds-key": a chain
  // certificate has the root's public key; "signed-by-root": a chain
  // certificate's signature verifies with the root's key.
  std::string how;
  size_t chain_index = 0;
  std::string root_sha256;
};

class InterceptorRegistry {
 public:
  // `origin` names the input in error messages.
  static tl::expected<InterceptorRegistry, std::string> from_json(std::string_view text, std::string_view origin);
  static tl::expected<InterceptorRegistry, std::string> from_file(const std::string& path);
  // The registry compiled into the binary from data/interceptors.json.
  static InterceptorRegistry builtin();

  void add(std::string name, std::string source, X509* root);
  std::optional<InterceptorHit> match(const std::vector<X509*>& chain) const;
  const std::vector<InterceptorRoot>& roots() const { return roots_; }

 private:
  std::vector<InterceptorRoot> roots_;
};

}  // namespace mw::certs
