#include "lab/tls_server.hpp"

#include "tls/ossl.hpp"
#include "tls/socket_bio.hpp"

#include <openssl/err.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string_view>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <unordered_map>

namespace mw::lab {
namespace {

using Clock = std::chrono::steady_clock;

bool name_matches(const std::string& sni, const std::string& rule) {
  if (sni.size() == rule.size()) return strcasecmp(sni.c_str(), rule.c_str()) == 0;
  if (sni.size() > rule.size() && sni[sni.size() - rule.size() - 1] == '.')
    return strcasecmp(sni.c_str() + sni.size() - rule.size(), rule.c_str()) == 0;
  return false;
}

const SniRule* find_rule(const Site& site, const std::string& sni) {
  for (const auto& rule : site.rules) {
    if (sni.empty() && !rule.match_no_sni) continue;
    bool named = rule.names.empty() || sni.empty();
    for (const auto& n : rule.names)
      if (name_matches(sni, n)) named = true;
    if (!named) continue;
    if (rule.uses_left && rule.uses_left->fetch_sub(1) <= 0) continue;
    return &rule;
  }
  return nullptr;
}

// The host_name entry of a server_name extension body (RFC 6066, 3).
std::string parse_server_name(const unsigned char* p, size_t len) {
  if (len < 5) return {};
  size_t list_len = (size_t{p[0]} << 8) | p[1];
  if (list_len + 2 > len || p[2] != 0) return {};
  size_t name_len = (size_t{p[3]} << 8) | p[4];
  if (name_len + 5 > len) return {};
  return std::string(reinterpret_cast<const char*>(p + 5), name_len);
}

}  // namespace

std::optional<Misbehaviour> misbehaviour_named(const std::string& name) {
  static const std::pair<const char*, Misbehaviour> kNames[] = {
      {"garbage", Misbehaviour::garbage}, {"drip", Misbehaviour::drip},
      {"stall", Misbehaviour::stall},     {"reset", Misbehaviour::reset},
      {"never-finish", Misbehaviour::never_finish}, {"huge-hello", Misbehaviour::huge_hello}};
  for (const auto& [n, m] : kNames)
    if (name == n) return m;
  return std::nullopt;
}

struct Conn {
  net::Fd fd;
  tls::SslPtr ssl;
  const Site* site = nullptr;
  std::shared_ptr<const Site> owned_site;  // keeps a site from site_for alive
  enum class State { handshaking, established, drip, stall, await_hello, flood } state = State::handshaking;
  Misbehaviour answer = Misbehaviour::none;  // for await_hello: what to send once the client spoke
  size_t flooded = 0;
  SniAction hello_action = SniAction::serve;  // set by the ClientHello callback
  Clock::time_point last_activity = Clock::now();
  Clock::time_point next_drip{};
  std::string request;  // an HTTP request head being read
  bool answered = false;
};

class TlsServer::Worker {
 public:
  struct Bound {
    net::Fd fd;
    std::shared_ptr<const Site> site;
    std::function<std::shared_ptr<const Site>(const net::Endpoint&)> site_for;
  };
  Worker(std::vector<Bound> listeners, Options options,
         std::atomic<uint64_t>& completed)
      : listeners_(std::move(listeners)), options_(options), completed_(completed) {}

  tl::expected<void, std::string> init() {
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    if (!ctx_) return tl::unexpected("SSL_CTX_new: " + tls::drain_errors());
    SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_VERSION);
    SSL_CTX_set_num_tickets(ctx_.get(), 0);
    SSL_CTX_set_session_cache_mode(ctx_.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx_.get(), SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_client_hello_cb(ctx_.get(), &Worker::on_client_hello, this);
    SSL_CTX_set_alpn_select_cb(
        ctx_.get(),
        [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen, void*) {
          // Prefer http/1.1 when offered, as a plain web server would.
          for (unsigned i = 0; i < inlen;) {
            unsigned len = in[i];
            if (i + 1 + len > inlen) break;
            if (len == 8 && std::memcmp(in + i + 1, "http/1.1", 8) == 0) {
              *out = in + i + 1;
              *outlen = static_cast<unsigned char>(len);
              return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + len;
          }
          return SSL_TLSEXT_ERR_NOACK;
        },
        nullptr);
    wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_ || !epoll_.valid()) return tl::unexpected(std::string("epoll/eventfd: ") + std::strerror(errno));
    epoll_.add(wake_.get(), EPOLLIN, kWakeTag);
    for (size_t i = 0; i < listeners_.size(); ++i) epoll_.add(listeners_[i].fd.get(), EPOLLIN, kListenTag | i);
    thread_ = std::thread([this] { loop(); });
    return {};
  }

  void stop() {
    if (!thread_.joinable()) return;
    stopping_ = true;
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
    thread_.join();
  }

  ~Worker() { stop(); }

 private:
  static constexpr uint64_t kWakeTag = 1ull << 62;
  static constexpr uint64_t kListenTag = 1ull << 61;

  static int on_client_hello(SSL* ssl, int* alert, void* arg) {
    auto* c = static_cast<Conn*>(SSL_get_app_data(ssl));
    const unsigned char* ext = nullptr;
    size_t ext_len = 0;
    std::string sni;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1)
      sni = parse_server_name(ext, ext_len);
    if (auto* self = static_cast<Worker*>(arg); self->options_.on_hello) self->report_hello(ssl, c, sni);
    const SniRule* rule = find_rule(*c->site, sni);
    const certs::ServedChain* chain = c->site->chain.get();
    if (rule) {
      c->hello_action = rule->action;
      switch (rule->action) {
        case SniAction::serve:
          if (rule->chain) chain = rule->chain.get();
          break;
        case SniAction::alert:
          *alert = rule->alert;
          return SSL_CLIENT_HELLO_ERROR;
        case SniAction::reset:
        case SniAction::silent:
          return SSL_CLIENT_HELLO_RETRY;  // the loop acts on hello_action
      }
    }
    if (!chain) {
      *alert = SSL_AD_INTERNAL_ERROR;
      return SSL_CLIENT_HELLO_ERROR;
    }
    STACK_OF(X509)* extra = sk_X509_new_null();
    for (const auto& c2 : chain->intermediates) sk_X509_push(extra, c2.get());
    // SSL_use_cert_and_key takes its own references to the chain.
    int ok = SSL_use_cert_and_key(ssl, chain->leaf.get(), chain->key.get(), extra, 1);
    sk_X509_free(extra);
    if (ok != 1) {
      *alert = SSL_AD_INTERNAL_ERROR;
      return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
  }

  void report_hello(SSL* ssl, Conn* c, const std::string& sni) {
    HelloSeen seen;
    seen.sni = sni;
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (::getpeername(c->fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0)
      seen.peer = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
    len = sizeof ss;
    if (::getsockname(c->fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0)
      seen.local = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
    seen.shape = std::to_string(SSL_client_hello_get0_legacy_version(ssl)) + ",";
    const unsigned char* ciphers = nullptr;
    size_t n = SSL_client_hello_get0_ciphers(ssl, &ciphers);
    for (size_t i = 0; i + 1 < n; i += 2)
      seen.shape += (i ? "-" : "") + std::to_string((ciphers[i] << 8) | ciphers[i + 1]);
    seen.shape += ",";
    int* exts = nullptr;
    size_t n_exts = 0;
    if (SSL_client_hello_get1_extensions_present(ssl, &exts, &n_exts) == 1) {
      for (size_t i = 0; i < n_exts; ++i) seen.shape += (i ? "-" : "") + std::to_string(exts[i]);
      OPENSSL_free(exts);
    }
    options_.on_hello(seen);
  }

  void accept_from(size_t index) {
    for (int burst = 0; burst < 64; ++burst) {
      int fd = ::accept4(listeners_[index].fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      auto conn = std::make_unique<Conn>();
      conn->fd.reset(fd);
      if (listeners_[index].site_for) {
        sockaddr_storage ss;
        socklen_t len = sizeof ss;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
        conn->owned_site = listeners_[index].site_for(net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss)));
        conn->site = conn->owned_site.get();
      } else {
        conn->site = listeners_[index].site.get();
      }
      if (!conn->site) continue;  // no server at this address: close
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      switch (conn->site->misbehaviour) {
        case Misbehaviour::garbage: {
          static const char kNotTls[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
          [[maybe_unused]] auto n = ::send(fd, kNotTls, sizeof kNotTls - 1, MSG_NOSIGNAL);
          continue;  // conn goes out of scope: closed
        }
        case Misbehaviour::drip: {
          // A handshake record header announcing 16 KiB: the client waits for all of it.
          static const unsigned char kHeader[] = {0x16, 0x03, 0x03, 0x40, 0x00};
          [[maybe_unused]] auto n = ::send(fd, kHeader, sizeof kHeader, MSG_NOSIGNAL);
          conn->state = Conn::State::drip;
          conn->next_drip = Clock::now() + std::chrono::seconds(1);
          break;
        }
        case Misbehaviour::stall:
          conn->state = Conn::State::stall;
          break;
        case Misbehaviour::reset: {
          linger lg{1, 0};  // close() sends RST
          ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
          continue;  // conn goes out of scope: reset
        }
        case Misbehaviour::never_finish:
        case Misbehaviour::huge_hello:
          conn->state = Conn::State::await_hello;
          conn->answer = conn->site->misbehaviour;
          break;
        case Misbehaviour::none:
          conn->ssl.reset(SSL_new(ctx_.get()));
          SSL_set_app_data(conn->ssl.get(), conn.get());
          tls::attach_socket(conn->ssl.get(), fd);
          break;
      }
      epoll_.add(fd, EPOLLIN, static_cast<uint64_t>(fd));
      conns_[fd] = std::move(conn);
    }
  }

  void close_conn(int fd, bool with_reset = false) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    if (with_reset) {
      linger lg{1, 0};  // close() then sends RST instead of FIN
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    conns_.erase(it);  // closing the fd also removes it from epoll
  }

  void drive(Conn& c) {
    c.last_activity = Clock::now();
    int fd = c.fd.get();
    if (c.state == Conn::State::drip || c.state == Conn::State::stall || c.state == Conn::State::flood) {
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN)) close_conn(fd);
      return;
    }
    if (c.state == Conn::State::await_hello) {  // the client's hello came: answer it badly
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN)) {
        close_conn(fd);
        return;
      }
      if (c.answer == Misbehaviour::never_finish) {
        // A record announcing 256 bytes, holding a ServerHello's first 11: the rest never comes.
        static const unsigned char kStart[] = {0x16, 0x03, 0x03, 0x01, 0x00, 0x02, 0x00, 0x00, 0xfc, 0x03, 0x03};
        [[maybe_unused]] auto sent = ::send(fd, kStart, sizeof kStart, MSG_NOSIGNAL);
        c.state = Conn::State::stall;
      } else {
        // A ServerHello of 16 MiB, 16 KiB records of it a few times a second (tick).
        static const unsigned char kHeader[] = {0x16, 0x03, 0x03, 0x40, 0x00, 0x02, 0xff, 0xff, 0xff};
        [[maybe_unused]] auto sent = ::send(fd, kHeader, sizeof kHeader, MSG_NOSIGNAL);
        c.state = Conn::State::flood;
        flood(c);
      }
      return;
    }
    if (c.state == Conn::State::handshaking) {
      ERR_clear_error();
      int rc = SSL_accept(c.ssl.get());
      if (rc == 1) {
        c.state = Conn::State::established;
        completed_.fetch_add(1, std::memory_order_relaxed);
      } else {
        int err = SSL_get_error(c.ssl.get(), rc);
        if (err == SSL_ERROR_WANT_CLIENT_HELLO_CB) {
          if (c.hello_action == SniAction::reset) {
            close_conn(fd, true);
          } else {  // silent: keep the socket, never answer
            c.ssl.reset();
            c.state = Conn::State::stall;
          }
          return;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
          epoll_.modify(fd, EPOLLIN | EPOLLOUT, static_cast<uint64_t>(fd));
          return;
        }
        if (err != SSL_ERROR_WANT_READ) {
          ERR_clear_error();
          close_conn(fd);
          return;
        }
        epoll_.modify(fd, EPOLLIN, static_cast<uint64_t>(fd));
        return;
      }
    }
    // Established: answer one HTTP request, read and discard the rest until the client goes away.
    char buf[4096];
    for (;;) {
      int n = SSL_read(c.ssl.get(), buf, sizeof buf);
      if (n > 0) {
        if (options_.answer_http && !c.answered) answer_request(fd, c, std::string_view(buf, static_cast<size_t>(n)));
        continue;
      }
      int err = SSL_get_error(c.ssl.get(), n);
      if (err == SSL_ERROR_WANT_READ) return;
      ERR_clear_error();
      close_conn(fd);
      return;
    }
  }

  void answer_request(int fd, Conn& c, std::string_view more) {
    c.request.append(more.substr(0, 8192 - std::min<size_t>(c.request.size(), 8192)));
    auto end = c.request.find("\r\n\r\n");
    if (end == std::string::npos && c.request.size() < 8192) return;
    c.answered = true;
    std::string sni;
    if (const char* name = SSL_get_servername(c.ssl.get(), TLSEXT_NAMETYPE_host_name)) sni = name;
    if (options_.on_request) {
      RequestSeen seen;
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
        seen.peer = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
      seen.sni = sni;
      seen.head = c.request.substr(0, end);
      options_.on_request(seen);
    }
    bool head_only = c.request.compare(0, 5, "HEAD ") == 0;
    c.request.clear();
    std::string body = "mitmwatch lab site" + (sni.empty() ? std::string() : " " + sni) + "\n";
    std::string response = "HTTP/1.1 200 OK\r\nServer: mitmwatch-lab\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + (head_only ? "" : body);
    // A few hundred bytes fit any socket buffer: one write or none.
    if (SSL_write(c.ssl.get(), response.data(), static_cast<int>(response.size())) <= 0) ERR_clear_error();
  }

  // The rest of a huge ServerHello's record and more records, 16 KiB at a time.
  void flood(Conn& c) {
    static const std::vector<unsigned char> kFill = [] {
      std::vector<unsigned char> v(16384 + 5, 0x41);
      v[0] = 0x16, v[1] = 0x03, v[2] = 0x03, v[3] = 0x40, v[4] = 0x00;  // a record header, then filler
      return v;
    }();
    // The first record already has its 4-byte handshake header: its remainder, then whole records.
    size_t skip = c.flooded == 0 ? 9 : 0;
    ssize_t n = ::send(c.fd.get(), kFill.data() + skip, kFill.size() - skip, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) c.flooded += static_cast<size_t>(n);
  }

  void tick() {
    auto now = Clock::now();
    auto idle = std::chrono::milliseconds(options_.idle_timeout_ms);
    std::vector<int> expired;
    for (auto& [fd, c] : conns_) {
      if (c->state == Conn::State::drip && now >= c->next_drip) {
        const unsigned char byte = 0x02;
        [[maybe_unused]] auto n = ::send(fd, &byte, 1, MSG_NOSIGNAL);
        c->next_drip = now + std::chrono::seconds(1);
        continue;  // dripping keeps it alive until the client gives up
      }
      if (c->state == Conn::State::flood && c->flooded < (16u << 20)) {
        flood(*c);  // 16 KiB every tick (100 ms): about 160 KiB a second
        continue;
      }
      if (c->state != Conn::State::drip && now - c->last_activity > idle) expired.push_back(fd);
    }
    for (int fd : expired) close_conn(fd);
  }

  void loop() {
    epoll_event events[128];
    auto next_tick = Clock::now();
    while (!stopping_) {
      int n = epoll_.wait(events, 128, 100);
      for (int i = 0; i < n; ++i) {
        uint64_t tag = events[i].data.u64;
        if (tag == kWakeTag) continue;
        if (tag & kListenTag) {
          accept_from(tag & ~kListenTag);
          continue;
        }
        auto it = conns_.find(static_cast<int>(tag));
        if (it != conns_.end()) drive(*it->second);
      }
      if (Clock::now() >= next_tick) {
        tick();
        next_tick = Clock::now() + std::chrono::milliseconds(100);
      }
    }
    conns_.clear();
  }

  std::vector<Bound> listeners_;
  Options options_;
  std::atomic<uint64_t>& completed_;
  tls::SslCtxPtr ctx_;
  net::Epoll epoll_;
  net::Fd wake_;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

tl::expected<std::unique_ptr<TlsServer>, std::string> TlsServer::start(std::vector<Listener> listeners,
                                                                       Options options) {
  std::unique_ptr<TlsServer> server(new TlsServer());
  std::vector<std::vector<Worker::Bound>> per_worker(
      static_cast<size_t>(std::max(1, options.workers)));
  for (auto& l : listeners) {
    net::Endpoint bound = l.bind;
    for (auto& worker_listeners : per_worker) {
      net::Fd fd(::socket(bound.ip.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd) return tl::unexpected(std::string("socket: ") + std::strerror(errno));
      int one = 1;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      // Several workers: each its own socket on the same port, and the kernel
      // spreads connections. Only then: with port 0, SO_REUSEPORT would let
      // the kernel give another process's port to this socket.
      if (per_worker.size() > 1) ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      if (bound.ip.family == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      sockaddr_storage ss;
      socklen_t len = bound.to_sockaddr(ss);
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
        return tl::unexpected("bind " + bound.to_string() + ": " + std::strerror(errno));
      if (::listen(fd.get(), 4096) != 0) return tl::unexpected(std::string("listen: ") + std::strerror(errno));
      if (bound.port == 0) {
        len = sizeof ss;
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
        bound = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
      }
      worker_listeners.push_back({std::move(fd), l.site, l.site_for});
    }
    server->endpoints_.push_back(bound);
  }
  for (auto& wl : per_worker) {
    auto w = std::make_unique<Worker>(std::move(wl), options, server->completed_);
    if (auto ok = w->init(); !ok) return tl::unexpected(ok.error());
    server->workers_.push_back(std::move(w));
  }
  return server;
}

void TlsServer::stop() {
  for (auto& w : workers_) w->stop();
}

TlsServer::~TlsServer() { stop(); }

}  // namespace mw::lab
