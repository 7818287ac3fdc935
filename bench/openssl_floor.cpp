// mw-openssl-floor: the least a scanner can do per handshake, as a yardstick.
// Non-blocking SSL_connect on epoll, CONCURRENCY at once, SNI set, chain not
// even read, no verification, no records. Targets one a line on stdin.
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <iostream>
#include <netinet/in.h>
#include <string>
#include <sys/epoll.h>
#include <unistd.h>
#include <vector>

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  bool connected = false;
};

int main(int argc, char** argv) {
  size_t concurrency = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1000;
  const char* sni = argc > 2 ? argv[2] : "facebook.com";
  std::vector<sockaddr_in> targets;
  std::string line;
  while (std::getline(std::cin, line)) {
    auto colon = line.find(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(colon == std::string::npos ? 443 : std::stoi(line.substr(colon + 1)));
    inet_pton(AF_INET, line.substr(0, colon).c_str(), &sa.sin_addr);
    targets.push_back(sa);
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  int ep = epoll_create1(0);
  std::vector<Conn> conns(concurrency);
  size_t next = 0, done = 0, ok = 0, active = 0;
  auto start = [&](size_t slot) {
    if (next >= targets.size()) return;
    Conn& c = conns[slot];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(c.fd, reinterpret_cast<sockaddr*>(&targets[next++]), sizeof(sockaddr_in));
    c.ssl = SSL_new(ctx);
    SSL_set_tlsext_host_name(c.ssl, sni);
    SSL_set_fd(c.ssl, c.fd);
    c.connected = false;
    epoll_event ev{EPOLLOUT, {.u64 = slot}};
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    ++active;
  };
  auto finish = [&](size_t slot, bool success) {
    Conn& c = conns[slot];
    SSL_free(c.ssl);
    close(c.fd);
    ++done;
    ok += success;
    --active;
    start(slot);
  };
  for (size_t i = 0; i < concurrency; ++i) start(i);
  epoll_event events[256];
  while (active > 0) {
    int n = epoll_wait(ep, events, 256, 1000);
    for (int i = 0; i < n; ++i) {
      size_t slot = events[i].data.u64;
      Conn& c = conns[slot];
      int rc = SSL_connect(c.ssl);
      if (rc == 1) {
        finish(slot, true);
        continue;
      }
      int err = SSL_get_error(c.ssl, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        epoll_event ev{static_cast<uint32_t>(err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT), {.u64 = slot}};
        epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        continue;
      }
      finish(slot, false);
    }
  }
  std::printf("%zu handshakes, %zu ok\n", done, ok);
  return 0;
}
