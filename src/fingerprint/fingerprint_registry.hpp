// Fingerprints of known interception devices' own ClientHellos (the devices
// that re-originate connections): data/fingerprints.json, compiled in.
#pragma once

#include <tl/expected.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mw::fingerprint {

struct KnownFingerprint {
  std::string name, source;
  std::string ja3, ja4, tlsfp;  // any may be empty; a match on any one counts
};

struct FingerprintHit {
  std::string name, source;
  std::string field;  // "ja3", "ja4", "tlsfp"
  std::string value;
};

class FingerprintRegistry {
 public:
  static tl::expected<FingerprintRegistry, std::string> from_json(std::string_view text, std::string_view origin);
  static tl::expected<FingerprintRegistry, std::string> from_file(const std::string& path);
  static FingerprintRegistry builtin();
  std::optional<FingerprintHit> match(const std::string& ja3, const std::string& ja4, const std::string& tlsfp) const;
  const std::vector<KnownFingerprint>& entries() const { return entries_; }

 private:
  std::vector<KnownFingerprint> entries_;
};

}  // namespace mw::fingerprint
