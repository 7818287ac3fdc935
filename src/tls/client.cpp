#include "tls/client.hpp"

#include "certs/x509.hpp"
#include "tls/socket_bio.hpp"

#include <openssl/err.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

namespace mw::tls {
namespace {

double ms_between(Handshake::Clock::time_point a, Handshake::Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

std::string contact_user_agent(const std::string& contact) {
  return std::string("mitmwatch/") + MW_VERSION + " (+" + contact + ")";
}

tl::expected<ClientProfile, std::string> ClientProfile::browser_like(std::string user_agent) {
  ClientProfile p;
  p.user_agent_ = std::move(user_agent);
  p.ctx_.reset(SSL_CTX_new(TLS_client_method()));
  if (!p.ctx_) return tl::unexpected("SSL_CTX_new: " + drain_errors());
  SSL_CTX* ctx = p.ctx_.get();
  SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // Trust is judged after the handshake against our own store, so the
  // handshake never fails for it; the chain is what we came for.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  // Frees the 16 KiB+ record buffers whenever they are idle: memory per
  // in-flight handshake is the scan's limit at high concurrency.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // Bounds what a hostile server can make us hold (OpenSSL's default is 100 KiB).
  SSL_CTX_set_max_cert_list(ctx, 64 * 1024);
  static const unsigned char alpn[] = "\x02h2\x08http/1.1";
  static const unsigned char alpn_http1[] = "\x08http/1.1";
  if (p.user_agent_.empty())
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
  else
    SSL_CTX_set_alpn_protos(ctx, alpn_http1, sizeof alpn_http1 - 1);
  return p;
}

tl::expected<ClientProfile, std::string> ClientProfile::tls13_only(std::string user_agent) {
  auto p = browser_like(std::move(user_agent));
  if (p) SSL_CTX_set_min_proto_version(p->ctx_.get(), TLS1_3_VERSION);
  return p;
}

Handshake::Handshake(const ClientProfile& profile, const net::Endpoint& target, std::string sni,
                     const std::optional<net::IpAddress>& source)
    : profile_(profile), target_(target), source_(source) {
  obs_.sni = std::move(sni);
}

Handshake::Want Handshake::fail(ProbeError error, std::string detail) {
  obs_.error = error;
  obs_.error_detail = std::move(detail);
  phase_ = Phase::done;
  ssl_.reset();
  fd_.reset();
  return Want::done;
}

Handshake::Want Handshake::start() {
  t_start_ = Clock::now();
  obs_.started_unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  auto conn = start_connect(target_, source_);
  if (!conn) return fail(conn.error().error, conn.error().detail);
  fd_ = std::move(conn->fd);
  if (conn->connected) return begin_tls();
  return Want::write;
}

Handshake::Want Handshake::on_ready() {
  if (phase_ == Phase::connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail(classify_connect_errno(err), std::strerror(err));
    return begin_tls();
  }
  if (phase_ == Phase::handshaking) return step_tls();
  if (phase_ == Phase::identifying) return step_identify();
  return Want::done;
}

std::optional<Handshake::Clock::time_point> Handshake::cut_deadline() const {
  if (phase_ == Phase::identifying) return identify_until_;
  return std::nullopt;
}

void Handshake::time_out() {
  if (phase_ == Phase::identifying) {  // the chain is in hand: no answer to the request is no error
    finish_identify();
    return;
  }
  if (phase_ == Phase::connecting) {
    fail(ProbeError::connect_timeout, "no answer to SYN before the deadline");
  } else if (phase_ == Phase::handshaking) {
    obs_.handshake_ms = ms_between(t_connected_, Clock::now());
    fail(ProbeError::handshake_timeout, "handshake not finished before the deadline");
  }
}

Handshake::Want Handshake::begin_tls() {
  t_connected_ = Clock::now();
  obs_.connect_ms = ms_between(t_start_, t_connected_);
  phase_ = Phase::handshaking;
  ssl_.reset(SSL_new(profile_.get()));
  if (!ssl_) return fail(ProbeError::protocol_error, "SSL_new: " + drain_errors());
  SSL_set_app_data(ssl_.get(), this);
  SSL_set_info_callback(ssl_.get(), &Handshake::on_info);
  if (!obs_.sni.empty()) SSL_set_tlsext_host_name(ssl_.get(), obs_.sni.c_str());
  if (!attach_socket(ssl_.get(), fd_.get())) return fail(ProbeError::protocol_error, "BIO_new failed");
  return step_tls();
}

void Handshake::on_info(const SSL* ssl, int where, int ret) {
  // SSL_CB_READ_ALERT shares its SSL_CB_ALERT bit with alerts we send: test both bits.
  if ((where & SSL_CB_ALERT) && (where & SSL_CB_READ)) {
    auto* self = static_cast<Handshake*>(SSL_get_app_data(ssl));
    self->alert_received_ = ret & 0xff;
  }
}

Handshake::Want Handshake::step_tls() {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_connect(ssl_.get());
  if (rc == 1) {
    obs_.handshake_ms = ms_between(t_connected_, Clock::now());
    capture_session(ssl_.get(), obs_);
    if (!profile_.user_agent().empty()) {
      // HTTP/1.1 only was offered; a server that picked another protocol gets no request.
      if (!obs_.alpn.empty() && obs_.alpn != "http/1.1") return finish_identify();
      phase_ = Phase::identifying;
      identify_until_ = Clock::now() + kIdentifyWait;
      request_ = "HEAD / HTTP/1.1\r\nHost: " + (obs_.sni.empty() ? target_.ip.to_string() : obs_.sni) +
                 "\r\nUser-Agent: " + profile_.user_agent() + "\r\nAccept: */*\r\nConnection: close\r\n\r\n";
      return step_identify();
    }
    phase_ = Phase::done;
    ssl_.reset();
    fd_.reset();  // no close_notify: the chain is all a scan needs
    return Want::done;
  }
  int err = SSL_get_error(ssl_.get(), rc);
  if (err == SSL_ERROR_WANT_READ) return Want::read;
  if (err == SSL_ERROR_WANT_WRITE) return Want::write;
  obs_.handshake_ms = ms_between(t_connected_, Clock::now());
  if (alert_received_ >= 0) {
    obs_.alert = alert_received_;
    return fail(ProbeError::tls_alert, std::string("alert received: ") + SSL_alert_desc_string_long(alert_received_));
  }
  if (err == SSL_ERROR_SYSCALL) {
    int saved = errno;
    if (saved == ECONNRESET || saved == EPIPE) return fail(ProbeError::reset, std::strerror(saved));
    if (saved == 0) return fail(ProbeError::eof, "connection closed during handshake");
    return fail(ProbeError::protocol_error, std::strerror(saved));
  }
  unsigned long code = ERR_peek_error();
  if (ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
    return fail(ProbeError::eof, "connection closed during handshake");
  // A reset can surface as an SSL-level error in OpenSSL 3 (system library).
  if (ERR_GET_LIB(code) == ERR_LIB_SYS && ERR_GET_REASON(code) == ECONNRESET)
    return fail(ProbeError::reset, std::strerror(ECONNRESET));
  return fail(ProbeError::protocol_error, drain_errors());
}

Handshake::Want Handshake::step_identify() {
  ERR_clear_error();
  if (!request_written_) {
    // Without partial writes SSL_write sends all or asks to be called again with the same bytes.
    int rc = SSL_write(ssl_.get(), request_.data(), static_cast<int>(request_.size()));
    if (rc <= 0) {
      int err = SSL_get_error(ssl_.get(), rc);
      if (err == SSL_ERROR_WANT_WRITE) return Want::write;
      if (err == SSL_ERROR_WANT_READ) return Want::read;
      return finish_identify();
    }
    request_written_ = true;
    obs_.request_sent = true;
  }
  char buf[512];
  for (;;) {
    int rc = SSL_read(ssl_.get(), buf, sizeof buf);
    if (rc <= 0) {
      int err = SSL_get_error(ssl_.get(), rc);
      if (err == SSL_ERROR_WANT_READ) return Want::read;
      if (err == SSL_ERROR_WANT_WRITE) return Want::write;
      return finish_identify();
    }
    response_.append(buf, static_cast<size_t>(rc));
    if (response_.find('\n') != std::string::npos || response_.size() >= 1024) return finish_identify();
  }
}

Handshake::Want Handshake::finish_identify() {
  // "HTTP/1.x NNN ...": anything else leaves the status unknown.
  if (response_.size() >= 12 && response_.compare(0, 7, "HTTP/1.") == 0 && response_[8] == ' ') {
    int code = 0;
    bool digits = true;
    for (size_t i = 9; i < 12; ++i) {
      digits = digits && response_[i] >= '0' && response_[i] <= '9';
      code = code * 10 + (response_[i] - '0');
    }
    if (digits) obs_.http_status = code;
  }
  ERR_clear_error();
  request_.clear();
  response_.clear();
  phase_ = Phase::done;
  ssl_.reset();
  fd_.reset();
  return Want::done;
}

void capture_session(SSL* ssl, Observation& obs) {
  obs.tls_version = SSL_get_version(ssl);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl)) obs.cipher = SSL_CIPHER_get_name(c);
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn) obs.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  // On the client side this stack includes the leaf, in the order sent.
  obs.chain.clear();
  obs.parsed.clear();
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl)) {
    for (int i = 0; i < sk_X509_num(chain); ++i) {
      X509* cert = sk_X509_value(chain, i);
      obs.chain.push_back(certs::to_der(cert));
      obs.parsed.push_back(X509Ref::share(cert));
    }
  }
}

}  // namespace mw::tls
