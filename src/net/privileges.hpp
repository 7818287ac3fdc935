// Giving up privilege once the raw sockets, namespaces and files are open: a
// command that needs root (trace, the lab's processes, a server on port 443)
// runs as root only for as long as it takes to open them, then as an
// unprivileged user with at most the capabilities it still uses.
#pragma once

#include <sys/types.h>
#include <tl/expected.hpp>

#include <string>
#include <vector>

namespace mw::net {

// Clears every capability (effective, permitted, inheritable, and the
// bounding set where allowed) and sets no_new_privs. Open descriptors stay
// usable. Returns how many capabilities were held.
tl::expected<int, std::string> drop_all_capabilities();

struct Identity {
  std::string user;      // the name, or the uid as text
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t capabilities = 0;  // effective, as a bit set (CAP_NET_ADMIN = 1 << 12)
  std::string describe() const;  // "nobody (uid 65534), capabilities: none"
};

// Who this process is now (uid, gid, effective capabilities).
Identity current_identity();

// As root: becomes `user` (its uid, gid and only that gid as groups) keeping
// only the `keep` capabilities (CAP_* numbers), the bounding set shrunk to
// them, no_new_privs set. Not root: keeps its user and drops the other
// capabilities. An error names the user or the call that failed.
tl::expected<Identity, std::string> drop_to_user(const std::string& user, const std::vector<int>& keep = {});

// $SUDO_USER when set and not root, else "nobody": whom a root command becomes.
std::string default_unprivileged_user();

}  // namespace mw::net
