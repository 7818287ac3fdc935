#include "tls/socket_bio.hpp"

#include <cerrno>
#include <sys/socket.h>

namespace mw::tls {
namespace {

int fd_of(BIO* bio) { return static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio))); }

bool retryable(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == EINPROGRESS; }

int bio_write(BIO* bio, const char* data, int len) {
  errno = 0;
  ssize_t n = ::send(fd_of(bio), data, static_cast<size_t>(len), MSG_NOSIGNAL);
  BIO_clear_retry_flags(bio);
  if (n < 0 && retryable(errno)) BIO_set_retry_write(bio);
  return static_cast<int>(n);
}

int bio_read(BIO* bio, char* data, int len) {
  errno = 0;
  ssize_t n = ::recv(fd_of(bio), data, static_cast<size_t>(len), 0);
  BIO_clear_retry_flags(bio);
  if (n < 0 && retryable(errno)) BIO_set_retry_read(bio);
  return static_cast<int>(n);
}

long bio_ctrl(BIO* bio, int cmd, long, void* ptr) {
  switch (cmd) {
    case BIO_C_GET_FD:
      if (ptr) *static_cast<int*>(ptr) = fd_of(bio);
      return fd_of(bio);
    case BIO_CTRL_FLUSH:
      return 1;
    default:
      return 0;
  }
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* method() {
  // Built once and never changed: OpenSSL needs a method table with static lifetime.
  static BIO_METHOD* const m = [] {
    BIO_METHOD* meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                    "mitmwatch socket (MSG_NOSIGNAL)");
    BIO_meth_set_write(meth, bio_write);
    BIO_meth_set_read(meth, bio_read);
    BIO_meth_set_ctrl(meth, bio_ctrl);
    BIO_meth_set_create(meth, bio_create);
    return meth;
  }();
  return m;
}

}  // namespace

bool attach_socket(SSL* ssl, int fd) {
  BIO* bio = BIO_new(method());
  if (!bio) return false;
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd)));
  SSL_set_bio(ssl, bio, bio);  // one BIO for both directions; SSL owns it
  return true;
}

}  // namespace mw::tls
