// Giving up privilege once the raw sockets and files are open: a trace runs
// as root (or with CAP_NET_RAW) only for as long as it takes to open them.
#pragma once

#include <tl/expected.hpp>

#include <string>

namespace mw::net {

// Clears every capability (effective, permitted, inheritable, and the
// bounding set where allowed) and sets no_new_privs. Open descriptors stay
// usable. Returns how many capabilities were held.
tl::expected<int, std::string> drop_all_capabilities();

}  // namespace mw::net
