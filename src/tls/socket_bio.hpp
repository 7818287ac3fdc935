// A socket BIO that never raises SIGPIPE. OpenSSL's own socket BIO writes
// with write(2), so a peer that resets the connection kills a process that
// has not ignored SIGPIPE; this one sends with MSG_NOSIGNAL, so the library
// is safe whatever its caller does with signals.
#pragma once

#include <openssl/ssl.h>

namespace mw::tls {

// Attaches `fd` (not owned) to `ssl` for reading and writing.
bool attach_socket(SSL* ssl, int fd);

}  // namespace mw::tls
