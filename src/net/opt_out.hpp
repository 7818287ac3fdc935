// Opt-out lists: the addresses and names whose owners asked not to be
// measured. One entry a line, '#' starts a comment:
//
//   198.51.100.0/24      # a prefix, or one address: never a target
//   2001:db8:1::/48
//   example.org          # a name: never sent as an SNI (nor swept)
//   *.example.net        # the name's subdomains (and the name itself)
//
// Kept in a file of the team's own (~/.config/mitmwatch/opt-out.txt is read
// by default) and applied by scan, sweep and trace before anything is sent.
#pragma once

#include "net/address.hpp"

#include <tl/expected.hpp>

#include <istream>
#include <string>
#include <string_view>
#include <vector>

namespace mw::net {

struct OptOut {
  std::vector<Prefix> prefixes;
  std::vector<std::string> names;     // exact, lower case
  std::vector<std::string> suffixes;  // "*.example.net" as ".example.net"
  bool covers_name(std::string_view name) const;  // case-insensitive, a trailing dot ignored
  bool empty() const { return prefixes.empty() && names.empty() && suffixes.empty(); }
  void add(const OptOut& more);
};

// Errors name the source and the line.
tl::expected<OptOut, std::string> read_opt_out(std::istream& in, const std::string& source);
// $XDG_CONFIG_HOME/mitmwatch/opt-out.txt, else ~/.config/mitmwatch/opt-out.txt.
std::string default_opt_out_path();

}  // namespace mw::net
