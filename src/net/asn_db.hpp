// AS number, AS organisation and country of an address from MaxMind-format
// databases (GeoLite2-ASN, GeoLite2-Country or -City, or one that has both).
#pragma once

#include "net/address.hpp"

#include <maxminddb.h>
#include <tl/expected.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mw::net {

struct AsnInfo {
  std::optional<uint32_t> asn;
  std::string as_org;
  std::string country;  // ISO 3166 alpha-2
  bool empty() const { return !asn && as_org.empty() && country.empty(); }
};

class AsnDatabase {
 public:
  static tl::expected<AsnDatabase, std::string> open(const std::string& path);
  AsnInfo lookup(const IpAddress& addr) const;

 private:
  struct Close {
    void operator()(MMDB_s* db) const {
      MMDB_close(db);
      delete db;
    }
  };
  std::unique_ptr<MMDB_s, Close> db_;
};

// Several databases, each filling what the others lack.
class AsnLookup {
 public:
  void add(AsnDatabase db) { dbs_.push_back(std::move(db)); }
  bool enabled() const { return !dbs_.empty(); }
  AsnInfo lookup(const IpAddress& addr) const;

 private:
  std::vector<AsnDatabase> dbs_;
};

}  // namespace mw::net
