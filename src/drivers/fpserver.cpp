#include "drivers/fpserver.hpp"

#include "certs/x509.hpp"
#include "fingerprint/fingerprints.hpp"
#include "fingerprint/handshake_stream.hpp"
#include "net/fd.hpp"
#include "net/packet.hpp"
#include "tls/ossl.hpp"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

namespace mw::drivers {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

constexpr uint64_t kListenerId = 0;

std::optional<SynFacts> saved_syn(int fd) {
  uint8_t buf[512];
  socklen_t len = sizeof buf;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_SAVED_SYN, buf, &len) != 0 || len == 0) return std::nullopt;
  auto ip = net::parse_ip({buf, len});
  if (!ip) return std::nullopt;
  auto tcp = net::parse_tcp(*ip);
  if (!tcp) return std::nullopt;
  SynFacts s;
  s.ttl = ip->ttl;
  s.window = tcp->window;
  auto o = tcp->options;
  for (size_t i = 0; i < o.size();) {
    uint8_t kind = o[i];
    std::string name;
    size_t n = 1;
    if (kind == 0) break;
    if (kind != 1) {
      if (i + 1 >= o.size() || o[i + 1] < 2 || i + o[i + 1] > o.size()) break;  // a lying option length
      n = o[i + 1];
    }
    switch (kind) {
      case 1: name = "nop"; break;
      case 2: name = "mss"; if (n == 4) s.mss = static_cast<uint16_t>(o[i + 2] << 8 | o[i + 3]); break;
      case 3: name = "ws"; if (n == 3) s.window_scale = o[i + 2]; break;
      case 4: name = "sok"; break;
      case 8: name = "ts"; break;
      default: name = fmt::format("?{}", kind); break;
    }
    if (!s.options.empty()) s.options += ',';
    s.options += name;
    i += n;
  }
  return s;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      default: out += c;
    }
  }
  return out;
}

int select_http11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                  void*) {
  for (unsigned int i = 0; i < inlen;) {
    unsigned int n = in[i];
    if (i + 1 + n > inlen) break;
    if (n == 8 && std::memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

Json fp_record(const FpConnection& c, const FpServerContext& ctx) {
  Json j;
  j["schema"] = "mitmwatch.fpserver/1";
  j["time_unix_ms"] =
      std::chrono::duration_cast<std::chrono::milliseconds>(c.accepted.time_since_epoch()).count();
  j["client"] = c.client.to_string();
  j["server"] = c.server.to_string();
  if (c.syn) {
    j["syn"] = {{"ttl", c.syn->ttl},
                {"window", c.syn->window},
                {"mss", c.syn->mss ? Json(*c.syn->mss) : Json(nullptr)},
                {"window_scale", c.syn->window_scale ? Json(*c.syn->window_scale) : Json(nullptr)},
                {"options", c.syn->options}};
  } else {
    j["syn"] = nullptr;
  }
  fingerprint::ClientPrints prints;
  if (c.hello) {
    auto ja3 = fingerprint::ja3(*c.hello);
    auto ja4 = fingerprint::ja4(*c.hello);
    prints = {ja3.hash, ja4.ja4, fingerprint::tlsfp(*c.hello)};
    j["sni"] = c.hello->sni ? Json(*c.hello->sni) : Json(nullptr);
    j["alpn"] = c.hello->alpn;
    j["ja3"] = ja3.hash;
    j["ja3_full"] = ja3.full;
    j["ja4"] = ja4.ja4;
    j["ja4_r"] = ja4.ja4_r;
    j["ja4_o"] = ja4.ja4_o;
    j["ja4_ro"] = ja4.ja4_ro;
    j["tlsfp"] = prints.tlsfp;
  } else {
    for (const char* k : {"sni", "ja3", "ja4", "tlsfp"}) j[k] = nullptr;
  }
  j["client_hello"] = certs::hex(c.hello_bytes.data(), c.hello_bytes.size());
  j["tls"] = {{"done", c.handshake_done},
              {"version", c.tls_version.empty() ? Json(nullptr) : Json(c.tls_version)},
              {"cipher", c.cipher.empty() ? Json(nullptr) : Json(c.cipher)},
              {"alpn", c.alpn.empty() ? Json(nullptr) : Json(c.alpn)}};
  j["http"] = c.method.empty() ? Json(nullptr)
                               : Json{{"method", c.method}, {"path", c.path}, {"user_agent", c.user_agent}};
  j["end"] = c.end;
  if (!c.detail.empty()) j["detail"] = c.detail;
  Json flags = Json::array();
  if (c.hello && ctx.fingerprints)
    if (auto hit = ctx.fingerprints->match(prints.ja3, prints.ja4, prints.tlsfp))
      flags.push_back({{"kind", "interceptor-fingerprint"},
                       {"detail", fmt::format("{} {} is {}'s own ClientHello", hit->field, hit->value, hit->name)}});
  if (c.hello && ctx.expectations)
    for (const auto& m : ctx.expectations->check(c.client.ip, c.user_agent, prints))
      flags.push_back({{"kind", "fingerprint-mismatch"},
                       {"detail", fmt::format("{}: {} {} is not what this client sends: re-originated on the way",
                                              m.rule, m.field, m.got)}});
  j["flags"] = std::move(flags);
  return j;
}

struct FpServer::Impl {
  enum class Phase { hello, handshake, request, respond };
  struct Conn {
    net::Fd fd;
    Phase phase = Phase::hello;
    Clock::time_point deadline;
    tls::SslPtr ssl;
    std::string request, response;
    size_t sent = 0;
    FpConnection facts;
  };

  FpServerOptions options;
  net::Fd listener;
  net::Endpoint local;
  tls::SslCtxPtr ctx;
  net::Epoll epoll;
  std::unordered_map<uint64_t, Conn> conns;
  uint64_t next_id = 1;
  FpServerStats stats;
  std::vector<uint8_t> peek_buffer;

  void end(uint64_t id, Conn& c, std::string how, std::string detail, const FpServerContext& fctx,
           const std::function<void(const Json&)>& log) {
    c.facts.end = std::move(how);
    if (c.facts.detail.empty()) c.facts.detail = std::move(detail);
    if (c.ssl && c.facts.handshake_done) SSL_shutdown(c.ssl.get());
    log(fp_record(c.facts, fctx));
    ++stats.logged;
    ERR_clear_error();
    conns.erase(id);
  }

  void accept_all() {
    for (;;) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      int fd = ::accept4(listener.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or a transient error: the next edge brings the rest
      ++stats.accepted;
      if (conns.size() >= options.max_connections) {
        ++stats.refused_over_cap;
        ::close(fd);
        continue;
      }
      uint64_t id = next_id++;
      Conn& c = conns[id];
      c.fd.reset(fd);
      c.deadline = Clock::now() + options.hello_timeout;
      c.facts.accepted = std::chrono::system_clock::now();
      c.facts.client = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&peer));
      sockaddr_storage self{};
      socklen_t self_len = sizeof self;
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &self_len) == 0)
        c.facts.server = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&self));
      c.facts.syn = saved_syn(fd);
      epoll.add(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, id);
    }
  }

  // Returns false when the connection ended.
  bool read_hello(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    peek_buffer.resize(options.max_hello_bytes);
    ssize_t n = ::recv(c.fd.get(), peek_buffer.data(), peek_buffer.size(), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) {
      end(id, c, "closed", n < 0 ? std::strerror(errno) : "closed before a ClientHello", fctx, log);
      return false;
    }
    fingerprint::HandshakeStream stream(options.max_hello_bytes);
    stream.feed({peek_buffer.data(), static_cast<size_t>(n)});
    auto m = stream.next();
    if (!m) {
      if (stream.state() != fingerprint::HandshakeStream::State::reading) {
        bool malformed = stream.state() == fingerprint::HandshakeStream::State::malformed;
        end(id, c, malformed ? "malformed-hello" : "not-tls", stream.reason(), fctx, log);
        return false;
      }
      if (static_cast<size_t>(n) >= options.max_hello_bytes) {
        end(id, c, "hello-too-large", fmt::format("no whole ClientHello in {} bytes", n), fctx, log);
        return false;
      }
      return true;  // more comes with the next edge
    }
    // What was peeked: the records of the ClientHello (a client sends nothing
    // after it before the server answers).
    c.facts.hello_bytes.assign(peek_buffer.begin(), peek_buffer.begin() + n);
    if (m->type == fingerprint::handshake_type::kClientHello) {
      auto h = fingerprint::parse_client_hello(m->body, m->record_version);
      if (h) c.facts.hello = std::move(*h);
      else c.facts.detail = h.error();
    }
    c.ssl.reset(SSL_new(ctx.get()));
    SSL_set_fd(c.ssl.get(), c.fd.get());
    SSL_set_accept_state(c.ssl.get());
    c.phase = Phase::handshake;
    c.deadline = Clock::now() + options.handshake_timeout;
    return true;
  }

  bool handshake(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    int rc = SSL_do_handshake(c.ssl.get());
    if (rc == 1) {
      c.facts.handshake_done = true;
      c.facts.tls_version = SSL_get_version(c.ssl.get());
      c.facts.cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(c.ssl.get()));
      const unsigned char* alpn = nullptr;
      unsigned int alpn_len = 0;
      SSL_get0_alpn_selected(c.ssl.get(), &alpn, &alpn_len);
      if (alpn) c.facts.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
      c.phase = Phase::request;
      c.deadline = Clock::now() + options.request_timeout;
      return true;
    }
    int err = SSL_get_error(c.ssl.get(), rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
    char text[256] = "";
    ERR_error_string_n(ERR_peek_last_error(), text, sizeof text);
    end(id, c, "handshake-failed", text[0] ? text : "the client closed during the handshake", fctx, log);
    return false;
  }

  bool read_request(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    char buf[4096];
    for (;;) {
      int n = SSL_read(c.ssl.get(), buf, sizeof buf);
      if (n <= 0) {
        int err = SSL_get_error(c.ssl.get(), n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
        end(id, c, "no-request", "the client closed without an HTTP request", fctx, log);
        return false;
      }
      c.request.append(buf, static_cast<size_t>(n));
      if (c.request.find("\r\n\r\n") != std::string::npos) break;
      if (c.request.size() > options.max_request_bytes) {
        end(id, c, "request-too-large", fmt::format("no end of headers in {} bytes", c.request.size()), fctx, log);
        return false;
      }
    }
    // Request line and User-Agent.
    size_t eol = c.request.find("\r\n");
    std::string line = c.request.substr(0, eol);
    size_t sp1 = line.find(' '), sp2 = line.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
    if (sp1 != std::string::npos) {
      c.facts.method = line.substr(0, sp1);
      c.facts.path = line.substr(sp1 + 1, sp2 == std::string::npos ? std::string::npos : sp2 - sp1 - 1);
    }
    for (size_t at = eol; at != std::string::npos && at + 2 < c.request.size();) {
      size_t next = c.request.find("\r\n", at + 2);
      std::string header = c.request.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
      if (lower(header.substr(0, 11)) == "user-agent:") {
        size_t v = header.find_first_not_of(' ', 11);
        c.facts.user_agent = v == std::string::npos ? "" : header.substr(v);
      }
      at = next;
    }
    c.facts.end = "served";
    Json record = fp_record(c.facts, fctx);
    std::string body, type;
    if (c.facts.path.rfind("/json", 0) == 0) {
      body = record.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
      type = "application/json";
    } else {
      body = "<!doctype html><title>Your TLS fingerprint</title><h1>Your TLS fingerprint</h1>"
             "<p>What this server saw of your connection: if a box on the way re-originated it, these are the box's "
             "fingerprints, not your browser's. <a href=\"/json\">JSON</a></p><pre>" +
             html_escape(record.dump(2, ' ', false, Json::error_handler_t::replace)) + "</pre>\n";
      type = "text/html; charset=utf-8";
    }
    c.response = fmt::format("HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n"
                             "Cache-Control: no-store\r\n\r\n{}",
                             type, body.size(), body);
    c.phase = Phase::respond;
    return respond(id, c, fctx, log);
  }

  bool respond(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    while (c.sent < c.response.size()) {
      int n = SSL_write(c.ssl.get(), c.response.data() + c.sent, static_cast<int>(c.response.size() - c.sent));
      if (n <= 0) {
        int err = SSL_get_error(c.ssl.get(), n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
        end(id, c, "closed", "the client closed before the whole answer", fctx, log);
        return false;
      }
      c.sent += static_cast<size_t>(n);
    }
    ++stats.served;
    end(id, c, "served", "", fctx, log);
    return false;
  }

  void on_event(uint64_t id, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = it->second;
    // Each phase may finish and hand over to the next within one event.
    for (int guard = 0; guard < 4; ++guard) {
      Phase before = c.phase;
      bool alive = true;
      switch (c.phase) {
        case Phase::hello: alive = read_hello(id, c, fctx, log); break;
        case Phase::handshake: alive = handshake(id, c, fctx, log); break;
        case Phase::request: alive = read_request(id, c, fctx, log); break;
        case Phase::respond: alive = respond(id, c, fctx, log); break;
      }
      if (!alive || c.phase == before) return;
    }
  }

  void expire(const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    auto now = Clock::now();
    std::vector<uint64_t> late;
    for (auto& [id, c] : conns)
      if (now >= c.deadline) late.push_back(id);
    for (uint64_t id : late) {
      Conn& c = conns.at(id);
      const char* phase = c.phase == Phase::hello       ? "hello-timeout"
                          : c.phase == Phase::handshake ? "handshake-timeout"
                                                        : "request-timeout";
      end(id, c, phase, "", fctx, log);
    }
  }
};

tl::expected<std::unique_ptr<FpServer>, std::string> FpServer::open(const FpServerOptions& options,
                                                                    const certs::ServedChain& chain) {
  std::unique_ptr<FpServer> s(new FpServer());
  s->impl_ = std::make_unique<Impl>();
  Impl& m = *s->impl_;
  m.options = options;
  if (!m.epoll.valid()) return tl::unexpected(std::string("epoll_create1: ") + std::strerror(errno));
  m.ctx.reset(SSL_CTX_new(TLS_server_method()));
  if (!m.ctx || SSL_CTX_use_certificate(m.ctx.get(), chain.leaf.get()) != 1 ||
      SSL_CTX_use_PrivateKey(m.ctx.get(), chain.key.get()) != 1 || SSL_CTX_check_private_key(m.ctx.get()) != 1)
    return tl::unexpected(std::string("the certificate and key do not go together"));
  for (const auto& c : chain.intermediates) SSL_CTX_add1_chain_cert(m.ctx.get(), c.get());
  SSL_CTX_set_alpn_select_cb(m.ctx.get(), select_http11, nullptr);
  SSL_CTX_set_num_tickets(m.ctx.get(), 0);

  sockaddr_storage addr{};
  socklen_t len = options.listen.to_sockaddr(addr);
  m.listener.reset(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!m.listener) return tl::unexpected(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(m.listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Another server may hold the wildcard on this port (the lab's servers do):
  // a listener on one address of it takes that address's connections.
  ::setsockopt(m.listener.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  ::setsockopt(m.listener.get(), IPPROTO_TCP, TCP_SAVE_SYN, &one, sizeof one);
  if (::bind(m.listener.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0)
    return tl::unexpected(fmt::format("bind {}: {}", options.listen.to_string(), std::strerror(errno)));
  if (::listen(m.listener.get(), 1024) != 0) return tl::unexpected(std::string("listen: ") + std::strerror(errno));
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  ::getsockname(m.listener.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len);
  m.local = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&bound));
  m.epoll.add(m.listener.get(), EPOLLIN | EPOLLET, kListenerId);
  return s;
}

FpServer::~FpServer() = default;

net::Endpoint FpServer::local() const { return impl_->local; }

FpServerStats FpServer::run(const FpServerContext& ctx, const std::atomic<bool>& stop,
                            const std::function<void(const nlohmann::ordered_json&)>& log) {
  Impl& m = *impl_;
  epoll_event events[256];
  while (!stop.load()) {
    int n = m.epoll.wait(events, 256, 100);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kListenerId) m.accept_all();
      else m.on_event(events[i].data.u64, ctx, log);
    }
    m.expire(ctx, log);
  }
  // What is still open is logged as it stands.
  std::vector<uint64_t> open;
  for (auto& [id, c] : m.conns) open.push_back(id);
  for (uint64_t id : open) m.end(id, m.conns.at(id), "server-stopped", "", ctx, log);
  return m.stats;
}

}  // namespace mw::drivers
