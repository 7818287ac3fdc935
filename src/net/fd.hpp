// Owning file descriptor, and an epoll instance.
#pragma once

#include <sys/epoll.h>
#include <unistd.h>

#include <utility>

namespace mw::net {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

class Epoll {
 public:
  Epoll() : fd_(::epoll_create1(EPOLL_CLOEXEC)) {}
  bool valid() const { return static_cast<bool>(fd_); }
  int add(int fd, uint32_t events, uint64_t data) { return control(EPOLL_CTL_ADD, fd, events, data); }
  int modify(int fd, uint32_t events, uint64_t data) { return control(EPOLL_CTL_MOD, fd, events, data); }
  int remove(int fd) { return ::epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr); }
  int wait(epoll_event* events, int max, int timeout_ms) { return ::epoll_wait(fd_.get(), events, max, timeout_ms); }

 private:
  int control(int op, int fd, uint32_t events, uint64_t data) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = data;
    return ::epoll_ctl(fd_.get(), op, fd, &ev);
  }
  Fd fd_;
};

}  // namespace mw::net
