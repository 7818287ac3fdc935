#include "net/asn_db.hpp"

#include <netinet/in.h>

namespace mw::net {

tl::expected<AsnDatabase, std::string> AsnDatabase::open(const std::string& path) {
  AsnDatabase d;
  auto* db = new MMDB_s{};
  int rc = MMDB_open(path.c_str(), MMDB_MODE_MMAP, db);
  if (rc != MMDB_SUCCESS) {
    delete db;
    return tl::unexpected(path + ": " + MMDB_strerror(rc));
  }
  d.db_.reset(db);
  return d;
}

AsnInfo AsnDatabase::lookup(const IpAddress& addr) const {
  AsnInfo info;
  sockaddr_storage ss{};
  Endpoint{addr, 0}.to_sockaddr(ss);
  int mmdb_error = 0;
  MMDB_lookup_result_s r = MMDB_lookup_sockaddr(db_.get(), reinterpret_cast<sockaddr*>(&ss), &mmdb_error);
  if (mmdb_error != MMDB_SUCCESS || !r.found_entry) return info;
  MMDB_entry_data_s v;
  if (MMDB_get_value(&r.entry, &v, "autonomous_system_number", nullptr) == MMDB_SUCCESS && v.has_data) {
    if (v.type == MMDB_DATA_TYPE_UINT32) info.asn = v.uint32;
    else if (v.type == MMDB_DATA_TYPE_UINT16) info.asn = v.uint16;
    else if (v.type == MMDB_DATA_TYPE_UINT64) info.asn = static_cast<uint32_t>(v.uint64);
  }
  if (MMDB_get_value(&r.entry, &v, "autonomous_system_organization", nullptr) == MMDB_SUCCESS && v.has_data &&
      v.type == MMDB_DATA_TYPE_UTF8_STRING)
    info.as_org.assign(v.utf8_string, v.data_size);
  if (MMDB_get_value(&r.entry, &v, "country", "iso_code", nullptr) == MMDB_SUCCESS && v.has_data &&
      v.type == MMDB_DATA_TYPE_UTF8_STRING)
    info.country.assign(v.utf8_string, v.data_size);
  return info;
}

AsnInfo AsnLookup::lookup(const IpAddress& addr) const {
  AsnInfo out;
  for (const auto& db : dbs_) {
    AsnInfo i = db.lookup(addr);
    if (!out.asn) out.asn = i.asn;
    if (out.as_org.empty()) out.as_org = i.as_org;
    if (out.country.empty()) out.country = i.country;
  }
  return out;
}

}  // namespace mw::net
