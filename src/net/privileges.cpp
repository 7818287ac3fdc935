#include "net/privileges.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bitset>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace mw::net {
namespace {

// capget/capset by syscall: libcap would be a dependency for two calls.
bool capget_now(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return syscall(SYS_capget, &header, data) == 0;
}

bool capset_to(uint64_t caps) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].effective = data[0].permitted = static_cast<uint32_t>(caps);
  data[1].effective = data[1].permitted = static_cast<uint32_t>(caps >> 32);
  return syscall(SYS_capset, &header, data) == 0;
}

std::string error(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

tl::expected<int, std::string> drop_all_capabilities() {
  __user_cap_data_struct data[2] = {};
  if (!capget_now(data)) return tl::unexpected(error("capget"));
  int held = static_cast<int>(std::bitset<32>(data[0].permitted).count() + std::bitset<32>(data[1].permitted).count());
  // The bounding set needs CAP_SETPCAP to shrink; without it there is
  // nothing to give up there anyway.
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return tl::unexpected(error("no_new_privs"));
  if (!capset_to(0)) return tl::unexpected(error("capset"));
  return held;
}

std::string Identity::describe() const {
  std::string caps;
  for (int cap = 0; cap < 64; ++cap)
    if (capabilities >> cap & 1) {
      const char* name = cap == CAP_NET_ADMIN ? "net_admin" : cap == CAP_NET_RAW ? "net_raw"
                         : cap == CAP_NET_BIND_SERVICE ? "net_bind_service" : nullptr;
      caps += (caps.empty() ? "" : ",") + (name ? std::string(name) : std::to_string(cap));
    }
  return fmt::format("{} (uid {}), capabilities: {}", user, uid, caps.empty() ? "none" : caps);
}

Identity current_identity() {
  Identity id;
  id.uid = getuid();
  id.gid = getgid();
  struct passwd* pw = getpwuid(id.uid);
  id.user = pw ? pw->pw_name : std::to_string(id.uid);
  __user_cap_data_struct data[2] = {};
  if (capget_now(data)) id.capabilities = static_cast<uint64_t>(data[1].effective) << 32 | data[0].effective;
  return id;
}

tl::expected<Identity, std::string> drop_to_user(const std::string& user, const std::vector<int>& keep) {
  uint64_t kept = 0;
  for (int cap : keep) kept |= uint64_t{1} << cap;
  if (geteuid() == 0) {
    struct passwd* pw = getpwnam(user.c_str());
    if (!pw) return tl::unexpected("--user " + user + ": no such user");
    if (pw->pw_uid == 0) return tl::unexpected("--user " + user + ": that is root; name an unprivileged user");
    // The bounding set while we still may (CAP_SETPCAP), then the user; KEEPCAPS
    // carries the permitted set over setuid, and capset trims it to `keep`.
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
      if (!(kept >> cap & 1)) (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    if (!keep.empty() && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return tl::unexpected(error("keepcaps"));
    gid_t gid = pw->pw_gid;
    if (setgroups(1, &gid) != 0) return tl::unexpected(error("setgroups"));
    if (setresgid(gid, gid, gid) != 0) return tl::unexpected(error("setgid " + std::to_string(gid)));
    if (setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0) return tl::unexpected(error("setuid " + user));
    if (!keep.empty() && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return tl::unexpected(error("keepcaps"));
  } else {
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
      if (!(kept >> cap & 1)) (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  }
  __user_cap_data_struct held[2] = {};
  if (!capget_now(held)) return tl::unexpected(error("capget"));
  kept &= static_cast<uint64_t>(held[1].permitted) << 32 | held[0].permitted;  // what is not held cannot be kept
  if (!capset_to(kept)) return tl::unexpected(error("capset"));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return tl::unexpected(error("no_new_privs"));
  return current_identity();
}

std::string default_unprivileged_user() {
  const char* sudo_user = std::getenv("SUDO_USER");
  if (sudo_user && *sudo_user && std::strcmp(sudo_user, "root") != 0) return sudo_user;
  return "nobody";
}

}  // namespace mw::net
