#include "drivers/fpserver.hpp"

#include "certs/x509.hpp"
#include "fingerprint/fingerprints.hpp"
#include "fingerprint/handshake_stream.hpp"
#include "io/markup.hpp"
#include "net/fd.hpp"
#include "net/packet.hpp"
#include "quic/initial.hpp"
#include "http/message.hpp"
#include "fingerprint/site_verdict.hpp"
#include "tls/ossl.hpp"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>

namespace mw::drivers {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

constexpr uint64_t kListenerId = 0, kUdpId = 1, kFirstConnectionId = 16;
constexpr uint64_t kUpstreamBit = 1ull << 63;  // an epoll id with it: the connection's upstream socket
constexpr int kMaxRequestsPerConnection = 1000;
constexpr size_t kQuicDatagramsKept = 4;
constexpr std::chrono::seconds kQuicQuietPeriod{30};

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

fingerprint::SiteVerdict site_verdict(const FpConnection& c, const FpServerContext& ctx) {
  if (!c.hello || !ctx.browsers || !ctx.fingerprints) return {};
  return fingerprint::judge_site_client(fingerprint::ja3(*c.hello).hash, fingerprint::ja4(*c.hello, c.transport).ja4,
                                        fingerprint::tlsfp(*c.hello), c.user_agent, *ctx.browsers, *ctx.fingerprints);
}

Json fp_record(const FpConnection& c, const FpServerContext& ctx) {
  Json j;
  j["schema"] = "mitmwatch.fpserver/1";
  j["transport"] = c.transport == 'q' ? "quic" : "tcp";
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
    auto ja4 = fingerprint::ja4(*c.hello, c.transport);
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
  if (c.quic) {
    Json datagrams = Json::array();
    for (const auto& d : c.quic->datagrams) datagrams.push_back(certs::hex(d.data(), d.size()));
    j["quic"] = {{"version", fmt::format("0x{:08x}", c.quic->version)},
                 {"dcid", certs::hex(c.quic->dcid.data(), c.quic->dcid.size())},
                 {"initials", c.quic->initials},
                 {"crypto_frames", c.quic->crypto_frames},
                 {"datagrams", std::move(datagrams)}};
  }
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
  auto verdict = site_verdict(c, ctx);
  j["verdict"] = verdict.verdict.empty() ? Json(nullptr) : Json(fingerprint::to_json(verdict));
  return j;
}

struct FpServer::Impl {
  enum class Phase { hello, handshake, request, upstream, respond };
  struct Conn {
    net::Fd fd;
    Phase phase = Phase::hello;
    Clock::time_point deadline;
    tls::SslPtr ssl;
    std::string request, response;  // the request (and what follows it), the answer
    std::optional<http::RequestHead> head;
    size_t body_length = 0, sent = 0;
    int status = 0, requests = 0;
    bool keep_alive = false, head_only = false;
    net::Fd upstream;  // to the site's backend, while it answers
    bool upstream_reused = false;
    std::string upstream_out, upstream_in;
    size_t upstream_sent = 0;
    FpConnection facts;
  };

  // A QUIC client, by source address: its first flight until the hello is
  // whole, then kept (logged) until its deadline so retransmissions are not
  // logged again.
  struct QuicClient {
    quic::InitialReader reader;
    FpConnection facts;
    Clock::time_point deadline;
    bool logged = false;
  };

  FpServerOptions options;
  net::Fd listener, udp;
  std::vector<net::Fd> idle_upstreams;  // kept-alive connections to the backend, not in epoll while idle
  static constexpr size_t kIdleUpstreams = 64;
  std::map<std::string, QuicClient> quic_clients;
  net::Endpoint local;
  tls::SslCtxPtr ctx;
  net::Epoll epoll;
  std::unordered_map<uint64_t, Conn> conns;
  uint64_t next_id = kFirstConnectionId;
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

  // A response of our own (the page, JSON, an error): framed, kept alive when the client allows.
  void answer(Conn& c, int status, const std::string& reason, const std::string& type, const std::string& body) {
    c.response = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n"
                             "Cache-Control: no-store\r\n\r\n",
                             status, reason, type, body.size(), c.keep_alive ? "keep-alive" : "close");
    if (!c.head_only) c.response += body;  // HEAD: the length of what GET would send, no body
    c.status = status;
    c.sent = 0;
    c.phase = Phase::respond;
  }

  void answer_page(Conn& c, const FpServerContext& fctx) {
    c.facts.end = "served";
    Json record = fp_record(c.facts, fctx);
    bool json = c.facts.path.rfind("/json", 0) == 0 || c.facts.path.rfind("/.mitmwatch/json", 0) == 0;
    if (json) {
      answer(c, 200, "OK", "application/json", record.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
      return;
    }
    std::string verdict;
    if (record.contains("verdict") && record["verdict"].is_object()) {
      const auto& v = record["verdict"];
      verdict = fmt::format("<p class=\"verdict {0}\"><b>{0}</b>: {1}</p>", io::xml_escape(v["verdict"].get<std::string>()),
                            io::xml_escape(v["reason"].get<std::string>()));
    }
    answer(c, 200, "OK", "text/html; charset=utf-8",
           "<!doctype html><meta charset=\"utf-8\"><title>Your TLS fingerprint</title><h1>Your TLS fingerprint</h1>" +
               verdict +
               "<p>What this server saw of your connection: if a box on the way re-originated it, these are the box's "
               "fingerprints, not your browser's. <a href=\"" +
               std::string(options.upstream ? "/.mitmwatch/json" : "/json") + "\">JSON</a></p><pre>" +
               io::xml_escape(record.dump(2, ' ', false, Json::error_handler_t::replace)) + "</pre>\n");
  }

  // The request to the backend: the client's, without hop-by-hop headers and
  // without any X-Mitmwatch-* the client sent (it cannot vouch for itself),
  // with the verdict and fingerprints added.
  std::string upstream_request(const Conn& c, const fingerprint::SiteVerdict& v) const {
    http::RequestHead out;
    out.method = c.head->method;
    out.target = c.head->target;
    out.version = "HTTP/1.1";
    for (const auto& [k, value] : c.head->headers) {
      if (http::is_hop_by_hop(c.head->headers, k) || lower(k).rfind("x-mitmwatch-", 0) == 0) continue;
      out.headers.emplace_back(k, value);
    }
    if (!http::header(out.headers, "host")) out.headers.emplace_back("Host", c.facts.server.to_string());
    if (c.facts.hello) {
      out.headers.emplace_back("X-Mitmwatch-Verdict", fingerprint::header_value(v));
      out.headers.emplace_back("X-Mitmwatch-JA4", fingerprint::ja4(*c.facts.hello, c.facts.transport).ja4);
      out.headers.emplace_back("X-Mitmwatch-JA3", fingerprint::ja3(*c.facts.hello).hash);
    } else {
      out.headers.emplace_back("X-Mitmwatch-Verdict", "unknown; reason=\"no ClientHello was read\"");
    }
    out.headers.emplace_back("X-Forwarded-For", c.facts.client.ip.to_string());
    out.headers.emplace_back("X-Forwarded-Proto", "https");
    return http::serialize(out) + c.request.substr(c.head->head_bytes, c.body_length);
  }

  bool start_upstream(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    c.upstream_out = upstream_request(c, site_verdict(c.facts, fctx));
    c.phase = Phase::upstream;
    c.deadline = Clock::now() + options.upstream_timeout;
    // A backend connection kept from an earlier request, else a new one.
    if (!idle_upstreams.empty()) {
      c.upstream = std::move(idle_upstreams.back());
      idle_upstreams.pop_back();
      c.upstream_reused = true;
      return send_upstream(id, c, fctx, log);
    }
    return connect_upstream(id, c, fctx, log);
  }

  bool connect_upstream(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    c.upstream_reused = false;
    sockaddr_storage addr{};
    socklen_t len = options.upstream->to_sockaddr(addr);
    c.upstream.reset(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    int rc = c.upstream ? ::connect(c.upstream.get(), reinterpret_cast<sockaddr*>(&addr), len) : -1;
    if (!c.upstream || (rc != 0 && errno != EINPROGRESS)) {
      bad_gateway(c, fmt::format("connecting to {}: {}", options.upstream->to_string(), std::strerror(errno)));
      return respond(id, c, fctx, log);
    }
    int one = 1;
    ::setsockopt(c.upstream.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return send_upstream(id, c, fctx, log);
  }

  bool send_upstream(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    c.upstream_sent = 0;
    c.upstream_in.clear();
    epoll.add(c.upstream.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, id | kUpstreamBit);
    return upstream_io(id, c, fctx, log);
  }

  // A kept backend connection that failed before any answer (the backend
  // closed it while idle): once more on a new one, when that cannot repeat a
  // request the backend acted on (nothing sent, or a method that is safe).
  // Empty when no retry applies; else whether the client's connection lives
  // on (the fresh attempt may already have answered and ended it).
  std::optional<bool> retry_fresh(uint64_t id, Conn& c, bool nothing_sent, const FpServerContext& fctx,
                                  const std::function<void(const Json&)>& log) {
    const auto& m = c.head->method;
    if (!c.upstream_reused || !c.upstream_in.empty() || !(nothing_sent || m == "GET" || m == "HEAD" || m == "OPTIONS"))
      return std::nullopt;
    drop_upstream(c);
    return connect_upstream(id, c, fctx, log);
  }

  void bad_gateway(Conn& c, const std::string& why) {
    drop_upstream(c);
    c.facts.detail = "upstream: " + why;
    c.keep_alive = false;
    answer(c, 502, "Bad Gateway", "text/plain; charset=utf-8", "mitmwatch fpserver: the site's backend: " + why + "\n");
  }

  void drop_upstream(Conn& c) {
    if (!c.upstream) return;
    epoll.remove(c.upstream.get());
    c.upstream.reset();
  }

  // Sends the request to the backend and reads its whole response (bounded),
  // then answers the client with it.
  bool upstream_io(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    int fd = c.upstream.get();
    while (c.upstream_sent < c.upstream_out.size()) {
      ssize_t n = ::send(fd, c.upstream_out.data() + c.upstream_sent, c.upstream_out.size() - c.upstream_sent, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS)) return true;
      if (n <= 0) {  // before any byte went: the connect itself failed
        if (auto alive = retry_fresh(id, c, c.upstream_sent == 0, fctx, log)) return *alive;
        bad_gateway(c, fmt::format("{}{}: {}", c.upstream_sent == 0 ? "connecting to " : "", options.upstream->to_string(),
                                   std::strerror(errno)));
        return respond(id, c, fctx, log);
      }
      c.upstream_sent += static_cast<size_t>(n);
    }
    char buf[16384];
    bool closed = false;
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) {
        if (auto alive = retry_fresh(id, c, false, fctx, log)) return *alive;
        bad_gateway(c, fmt::format("{}: {}", options.upstream->to_string(), std::strerror(errno)));
        return respond(id, c, fctx, log);
      }
      if (n == 0) {
        if (auto alive = retry_fresh(id, c, false, fctx, log)) return *alive;
        closed = true;
        break;
      }
      c.upstream_in.append(buf, static_cast<size_t>(n));
      if (c.upstream_in.size() > options.max_response_bytes) {
        bad_gateway(c, fmt::format("a response over {} bytes (--max-response-bytes)", options.max_response_bytes));
        return respond(id, c, fctx, log);
      }
    }
    auto head = http::parse_response_head(c.upstream_in);
    if (!head) {
      bad_gateway(c, "its response is not HTTP: " + head.error());
      return respond(id, c, fctx, log);
    }
    if (!*head) {
      if (closed) {
        bad_gateway(c, "it closed before a whole response head");
        return respond(id, c, fctx, log);
      }
      return true;
    }
    auto framing = http::response_body(**head, c.head->method);
    std::string_view body(c.upstream_in);
    body.remove_prefix((*head)->head_bytes);
    size_t body_length = 0;
    switch (framing.kind) {
      case http::BodyFraming::Kind::none: break;
      case http::BodyFraming::Kind::length:
        if (body.size() < framing.length) {
          if (closed) {
            bad_gateway(c, "it closed in the middle of the body");
            return respond(id, c, fctx, log);
          }
          return true;
        }
        body_length = framing.length;
        break;
      case http::BodyFraming::Kind::chunked: {
        auto end = http::chunked_end(body);
        if (!end) {
          bad_gateway(c, "its chunked body: " + end.error());
          return respond(id, c, fctx, log);
        }
        if (!*end) {
          if (closed) {
            bad_gateway(c, "it closed in the middle of a chunked body");
            return respond(id, c, fctx, log);
          }
          return true;
        }
        body_length = **end;
        break;
      }
      case http::BodyFraming::Kind::until_close:
        if (!closed) return true;
        body_length = body.size();
        break;
    }
    // Whole. The client gets it framed so that its connection can stay open:
    // a body that ended with the backend's close gets a Content-Length.
    http::ResponseHead out = **head;
    out.version = "HTTP/1.1";
    out.headers.clear();
    for (const auto& [k, value] : (*head)->headers) {
      auto name = lower(k);
      if (name == "connection" || name == "keep-alive" || http::header_has_token((*head)->headers, "connection", k)) continue;
      out.headers.emplace_back(k, value);
    }
    if (framing.kind == http::BodyFraming::Kind::until_close)
      out.headers.emplace_back("Content-Length", std::to_string(body_length));
    out.headers.emplace_back("Connection", c.keep_alive ? "keep-alive" : "close");
    c.response = http::serialize(out);
    c.response.append(body.substr(0, body_length));
    c.status = out.status;
    c.sent = 0;
    // The backend connection is kept for a later request when its framing
    // allows and it did not ask to close.
    bool reusable = framing.kind != http::BodyFraming::Kind::until_close && !closed && (*head)->version == "HTTP/1.1" &&
                    !http::header_has_token((*head)->headers, "connection", "close") && body.size() == body_length &&
                    idle_upstreams.size() < kIdleUpstreams;
    if (reusable) {
      epoll.remove(c.upstream.get());
      idle_upstreams.push_back(std::move(c.upstream));
    } else {
      drop_upstream(c);
    }
    c.phase = Phase::respond;
    return respond(id, c, fctx, log);
  }

  // Parses what the buffer holds; false when that ended in an answer of our own (an error).
  bool take_head(Conn& c) {
    auto head = http::parse_request_head(c.request);
    if (!head) {
      c.facts.detail = "a request that is not HTTP/1.x: " + head.error();
      c.keep_alive = false;
      answer(c, 400, "Bad Request", "text/plain; charset=utf-8", "mitmwatch fpserver: " + head.error() + "\n");
      return false;
    }
    if (!*head) return true;
    c.head = std::move(**head);
    c.facts.method = c.head->method;
    c.facts.path = c.head->target;
    c.facts.user_agent = http::header(c.head->headers, "user-agent").value_or("");
    c.head_only = c.head->method == "HEAD";
    c.keep_alive = c.head->version == "HTTP/1.1" ? !http::header_has_token(c.head->headers, "connection", "close")
                                                 : http::header_has_token(c.head->headers, "connection", "keep-alive");
    // Alone, the server shows each client one page and closes, as it always did;
    // in front of a site, connections stay open as the site's would.
    if (!options.upstream || c.requests + 1 >= kMaxRequestsPerConnection) c.keep_alive = false;
    auto body = http::request_body(*c.head);
    if (!body) {
      c.keep_alive = false;
      answer(c, 411, "Length Required", "text/plain; charset=utf-8", "mitmwatch fpserver: " + body.error() + "\n");
      return false;
    }
    if (body->length > options.max_body_bytes) {
      c.keep_alive = false;
      answer(c, 413, "Content Too Large", "text/plain; charset=utf-8",
             fmt::format("mitmwatch fpserver: a body of {} bytes (at most {})\n", body->length, options.max_body_bytes));
      return false;
    }
    c.body_length = body->length;
    return true;
  }

  bool read_request(uint64_t id, Conn& c, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    char buf[16384];
    for (;;) {
      // What is buffered first: a kept-alive client may have sent its next request already.
      if (!c.head && !c.request.empty() && !take_head(c)) return respond(id, c, fctx, log);
      if (!c.head && c.request.size() > options.max_request_bytes) {
        end(id, c, "request-too-large", fmt::format("no end of headers in {} bytes", c.request.size()), fctx, log);
        return false;
      }
      if (c.head && c.request.size() >= c.head->head_bytes + c.body_length) break;  // whole
      int n = SSL_read(c.ssl.get(), buf, sizeof buf);
      if (n <= 0) {
        int err = SSL_get_error(c.ssl.get(), n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
        if (c.requests > 0 && c.request.empty()) {  // a kept-alive connection the client closed between requests
          end_quietly(id, c);
          return false;
        }
        end(id, c, "no-request", "the client closed without an HTTP request", fctx, log);
        return false;
      }
      c.request.append(buf, static_cast<size_t>(n));
    }
    // A whole request. Ours to answer, or the site's.
    bool ours = !options.upstream || c.head->target.rfind("/.mitmwatch", 0) == 0;
    if (ours) {
      answer_page(c, fctx);
      return respond(id, c, fctx, log);
    }
    return start_upstream(id, c, fctx, log);
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
    const char* how = c.status == 502 || c.status == 504 ? "bad-gateway" : "served";
    if (!c.keep_alive) {
      end(id, c, how, "", fctx, log);
      return false;
    }
    // Kept alive: this request is logged, the next one starts (it may be here already).
    c.facts.end = how;
    log(fp_record(c.facts, fctx));
    ++stats.logged;
    std::string rest = c.request.substr(std::min(c.request.size(), c.head->head_bytes + c.body_length));
    ++c.requests;
    c.request = std::move(rest);
    c.head.reset();
    c.body_length = 0;
    c.response.clear();
    c.sent = 0;
    c.status = 0;
    c.facts.method.clear();
    c.facts.path.clear();
    c.facts.user_agent.clear();
    c.facts.detail.clear();
    c.facts.accepted = std::chrono::system_clock::now();
    c.phase = Phase::request;
    c.deadline = Clock::now() + options.request_timeout;
    return read_request(id, c, fctx, log);
  }

  void end_quietly(uint64_t id, Conn& c) {
    drop_upstream(c);
    ERR_clear_error();
    conns.erase(id);
  }

  void on_event(uint64_t id, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    bool from_upstream = (id & kUpstreamBit) != 0;
    auto it = conns.find(id & ~kUpstreamBit);
    if (it == conns.end()) return;
    Conn& c = it->second;
    id &= ~kUpstreamBit;
    if (from_upstream) {
      if (c.phase == Phase::upstream) upstream_io(id, c, fctx, log);
      return;
    }
    // Each phase may finish and hand over to the next within one event.
    for (int guard = 0; guard < 8; ++guard) {
      Phase before = c.phase;
      bool alive = true;
      switch (c.phase) {
        case Phase::hello: alive = read_hello(id, c, fctx, log); break;
        case Phase::handshake: alive = handshake(id, c, fctx, log); break;
        case Phase::request: alive = read_request(id, c, fctx, log); break;
        case Phase::upstream: return;  // the client waits; its bytes stay in the socket
        case Phase::respond: alive = respond(id, c, fctx, log); break;
      }
      if (!alive || c.phase == before) return;
    }
  }

  void log_quic(QuicClient& q, const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    q.facts.hello = q.reader.hello();
    q.facts.quic->version = q.reader.version();
    q.facts.quic->dcid = q.reader.dcid();
    q.facts.quic->initials = q.reader.initials();
    q.facts.quic->crypto_frames = q.reader.crypto_frames();
    if (q.reader.hello()) {
      q.facts.end = "quic-hello";
      ++stats.quic_hellos;
    } else {
      q.facts.end = "quic-incomplete";
      q.facts.detail = !q.reader.error().empty()        ? q.reader.error()
                       : !q.reader.problems().empty()  ? q.reader.problems().back()
                                                       : "the ClientHello's CRYPTO data never came whole";
    }
    log(fp_record(q.facts, fctx));
    ++stats.logged;
    q.logged = true;
    // The client retries its Initials for a while (nothing answers it): those
    // are the same connection, not new ones to log.
    q.deadline = Clock::now() + kQuicQuietPeriod;
  }

  void read_quic(const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    uint8_t buf[2048];  // a QUIC datagram is at most what the path carries; Initials are padded to 1200
    for (int budget = 0; budget < 1024; ++budget) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      ssize_t n = ::recvfrom(udp.get(), buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&peer), &len);
      if (n < 0) return;  // EAGAIN: the next edge brings the rest
      ++stats.quic_datagrams;
      auto from = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&peer));
      auto key = from.to_string();
      auto it = quic_clients.find(key);
      if (it == quic_clients.end()) {
        if (quic_clients.size() >= options.max_connections) {
          ++stats.refused_over_cap;
          continue;
        }
        it = quic_clients.emplace(key, QuicClient{}).first;
        auto& f = it->second.facts;
        f.transport = 'q';
        f.accepted = std::chrono::system_clock::now();
        f.client = from;
        f.server = local;
        f.quic.emplace();
        it->second.deadline = Clock::now() + options.hello_timeout;
      }
      QuicClient& q = it->second;
      if (q.logged) {  // a retransmission of a flight already logged: it keeps the quiet period going
        q.deadline = Clock::now() + kQuicQuietPeriod;
        continue;
      }
      std::span<const uint8_t> datagram(buf, static_cast<size_t>(n));
      if (q.facts.quic->datagrams.size() < kQuicDatagramsKept) q.facts.quic->datagrams.emplace_back(datagram.begin(), datagram.end());
      if (auto ok = q.reader.add(datagram); !ok && q.facts.detail.empty()) q.facts.detail = ok.error();
      if (q.reader.done()) log_quic(q, fctx, log);
    }
  }

  void expire(const FpServerContext& fctx, const std::function<void(const Json&)>& log) {
    auto now = Clock::now();
    for (auto it = quic_clients.begin(); it != quic_clients.end();) {
      if (now < it->second.deadline) {
        ++it;
        continue;
      }
      if (!it->second.logged) log_quic(it->second, fctx, log);
      it = quic_clients.erase(it);
    }
    std::vector<uint64_t> late;
    for (auto& [id, c] : conns)
      if (now >= c.deadline) late.push_back(id);
    for (uint64_t id : late) {
      Conn& c = conns.at(id);
      if (c.phase == Phase::upstream) {  // the backend took too long: the client hears so
        drop_upstream(c);
        c.facts.detail = fmt::format("upstream: no whole response in {} ms", options.upstream_timeout.count());
        c.keep_alive = false;
        answer(c, 504, "Gateway Timeout", "text/plain; charset=utf-8", "mitmwatch fpserver: the site's backend did not answer\n");
        c.deadline = now + options.request_timeout;
        respond(id, c, fctx, log);
        continue;
      }
      if (c.phase == Phase::request && c.requests > 0 && c.request.empty()) {  // an idle kept-alive connection
        end_quietly(id, c);
        continue;
      }
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
  if (options.quic) {
    m.udp.reset(::socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!m.udp) return tl::unexpected(std::string("socket (udp): ") + std::strerror(errno));
    ::setsockopt(m.udp.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(m.udp.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    // The same port as TCP (port 0: the one TCP got), as an HTTP/3 site has it.
    socklen_t udp_len = m.local.to_sockaddr(addr);
    if (::bind(m.udp.get(), reinterpret_cast<sockaddr*>(&addr), udp_len) != 0)
      return tl::unexpected(fmt::format("bind udp {}: {}", m.local.to_string(), std::strerror(errno)));
    m.epoll.add(m.udp.get(), EPOLLIN | EPOLLET, kUdpId);
  }
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
      else if (events[i].data.u64 == kUdpId) m.read_quic(ctx, log);
      else m.on_event(events[i].data.u64, ctx, log);
    }
    m.expire(ctx, log);
  }
  // What is still open is logged as it stands.
  std::vector<uint64_t> open;
  for (auto& [id, c] : m.conns) open.push_back(id);
  for (uint64_t id : open) m.end(id, m.conns.at(id), "server-stopped", "", ctx, log);
  for (auto& [key, q] : m.quic_clients)
    if (!q.logged) m.log_quic(q, ctx, log);
  return m.stats;
}

}  // namespace mw::drivers
