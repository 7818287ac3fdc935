// A set of address prefixes with a lookup in O(log n): blocklists and opt-out
// lists of a scan that checks every target against them (a real opt-out list
// holds thousands of prefixes).
#pragma once

#include "net/address.hpp"

#include <vector>

namespace mw::net {

// Addresses as numbers: IPv6's 128 bits in one (GCC's extension, hence the keyword).
__extension__ typedef unsigned __int128 AddressValue;

class PrefixSet {
 public:
  PrefixSet() = default;
  explicit PrefixSet(const std::vector<Prefix>& prefixes);
  bool contains(const IpAddress& addr) const;
  bool empty() const { return v4_.empty() && v6_.empty(); }

 private:
  using Range = std::pair<AddressValue, AddressValue>;  // first and last address, merged, sorted
  static bool in(const std::vector<Range>& ranges, AddressValue value);
  std::vector<Range> v4_, v6_;
};

// data/blocklist.conf, compiled in: the IANA special-purpose ranges that are
// not globally reachable, multicast and reserved.
const std::vector<Prefix>& shipped_blocklist();

}  // namespace mw::net
