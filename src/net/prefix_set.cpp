#include "net/prefix_set.hpp"

#include "net/targets.hpp"

#include <algorithm>
#include <sstream>

namespace mw {
std::string_view embedded_blocklist_conf();
}

namespace mw::net {
namespace {

AddressValue value_of(const IpAddress& a) {
  AddressValue v = 0;
  for (size_t i = 0; i < a.size(); ++i) v = v << 8 | a.bytes[i];
  return v;
}

std::vector<std::pair<AddressValue, AddressValue>> merged(
    std::vector<std::pair<AddressValue, AddressValue>> r) {
  std::sort(r.begin(), r.end());
  std::vector<std::pair<AddressValue, AddressValue>> out;
  for (const auto& x : r) {
    if (!out.empty() && x.first <= out.back().second + 1 && out.back().second + 1 != 0) {
      out.back().second = std::max(out.back().second, x.second);
    } else if (!out.empty() && out.back().second == ~static_cast<AddressValue>(0)) {
      continue;  // the previous range already runs to the end of the space
    } else {
      out.push_back(x);
    }
  }
  return out;
}

}  // namespace

PrefixSet::PrefixSet(const std::vector<Prefix>& prefixes) {
  std::vector<Range> v4, v6;
  for (const auto& p : prefixes) {
    int bits = p.base.bits();
    AddressValue first = value_of(p.base);
    AddressValue span = p.length == 0 && bits == 128 ? ~static_cast<AddressValue>(0)
                                                          : (static_cast<AddressValue>(1) << (bits - p.length)) - 1;
    (bits == 32 ? v4 : v6).push_back({first, first + span});
  }
  v4_ = merged(std::move(v4));
  v6_ = merged(std::move(v6));
}

bool PrefixSet::in(const std::vector<Range>& ranges, AddressValue v) {
  // The last range starting at or before v.
  auto it = std::upper_bound(ranges.begin(), ranges.end(), v, [](AddressValue x, const Range& r) { return x < r.first; });
  if (it == ranges.begin()) return false;
  return v <= std::prev(it)->second;
}

bool PrefixSet::contains(const IpAddress& addr) const {
  return in(addr.bits() == 32 ? v4_ : v6_, value_of(addr));
}

const std::vector<Prefix>& shipped_blocklist() {
  static const std::vector<Prefix> list = [] {  // immutable once built
    std::istringstream in{std::string(embedded_blocklist_conf())};
    auto parsed = read_blocklist(in, "data/blocklist.conf");
    return parsed ? std::move(*parsed) : std::vector<Prefix>{};
  }();
  return list;
}

}  // namespace mw::net
