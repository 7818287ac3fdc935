#include "net/privileges.hpp"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bitset>
#include <cerrno>
#include <cstring>

namespace mw::net {

// capget/capset by syscall: libcap would be a dependency for two calls.
tl::expected<int, std::string> drop_all_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return tl::unexpected(std::string("capget: ") + std::strerror(errno));
  int held = static_cast<int>(std::bitset<32>(data[0].permitted).count() + std::bitset<32>(data[1].permitted).count());
  // The bounding set needs CAP_SETPCAP to shrink; without it there is
  // nothing to give up there anyway.
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return tl::unexpected(std::string("no_new_privs: ") + std::strerror(errno));
  __user_cap_data_struct none[2] = {};
  if (syscall(SYS_capset, &header, none) != 0) return tl::unexpected(std::string("capset: ") + std::strerror(errno));
  return held;
}

}  // namespace mw::net
