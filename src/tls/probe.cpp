#include "tls/probe.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace mw::tls {

ProbeError classify_connect_errno(int err) {
  switch (err) {
    case ECONNREFUSED: return ProbeError::connect_refused;
    case ETIMEDOUT: return ProbeError::connect_timeout;
    case ECONNRESET:
    case EPIPE: return ProbeError::reset;
    default: return ProbeError::connect_unreachable;
  }
}

tl::expected<ConnectStart, ConnectFailure> start_connect(const net::Endpoint& target,
                                                         const std::optional<net::IpAddress>& source) {
  ConnectStart out;
  out.fd.reset(::socket(target.ip.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!out.fd)
    return tl::unexpected(ConnectFailure{ProbeError::connect_unreachable, std::string("socket: ") + std::strerror(errno)});
  int one = 1;
  ::setsockopt(out.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (source) {
    sockaddr_storage ss;
    socklen_t len = net::Endpoint{*source, 0}.to_sockaddr(ss);
    if (::bind(out.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
      return tl::unexpected(
          ConnectFailure{ProbeError::connect_unreachable, std::string("bind source address: ") + std::strerror(errno)});
  }
  sockaddr_storage ss;
  socklen_t len = target.to_sockaddr(ss);
  if (::connect(out.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    out.connected = true;
    return out;
  }
  if (errno != EINPROGRESS) return tl::unexpected(ConnectFailure{classify_connect_errno(errno), std::strerror(errno)});
  return out;
}

}  // namespace mw::tls
