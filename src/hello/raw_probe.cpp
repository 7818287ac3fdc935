#include "hello/raw_probe.hpp"

#include "certs/x509.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstring>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

namespace mw::hello {
namespace {

using tls::ProbeError;
namespace hs = fingerprint::handshake_type;

double ms_between(tls::Probe::Clock::time_point a, tls::Probe::Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string version_name(uint16_t v) {
  switch (v) {
    case 0x0304: return "TLSv1.3";
    case 0x0303: return "TLSv1.2";
    case 0x0302: return "TLSv1.1";
    case 0x0301: return "TLSv1";
    case 0x0300: return "SSLv3";
    default: return fmt::format("0x{:04x}", v);
  }
}

// Gap between segments when the previous one is not yet acknowledged.
constexpr auto kSegmentPoll = std::chrono::milliseconds(1);

}  // namespace

ProbeCache::ProbeCache() : ctx_(SSL_CTX_new(TLS_method())) {
  if (ctx_) ssl_.reset(SSL_new(ctx_.get()));
}

std::string ProbeCache::name(uint16_t id) const {
  const unsigned char bytes[2] = {static_cast<unsigned char>(id >> 8), static_cast<unsigned char>(id)};
  if (ssl_)
    if (const SSL_CIPHER* c = SSL_CIPHER_find(ssl_.get(), bytes)) return SSL_CIPHER_get_name(c);
  return fmt::format("0x{:04X}", id);
}

tls::X509Ref ProbeCache::parse(const tls::Der& der) {
  std::string key(der.begin(), der.end());
  if (auto it = parsed_.find(key); it != parsed_.end()) return it->second;
  auto cert = certs::from_der(der);
  if (!cert) return {};
  if (parsed_.size() >= kMaxParsed) parsed_.clear();  // bounded; a scan's working set is far smaller
  return parsed_.emplace(std::move(key), tls::X509Ref::adopt(std::move(*cert))).first->second;
}

RawHelloProbe::RawHelloProbe(const net::Endpoint& target, Wire wire, std::string sni,
                             const std::optional<net::IpAddress>& source, ProbeCache& names)
    : target_(target), wire_(std::move(wire)), source_(source), names_(names) {
  obs_.sni = std::move(sni);
}

tls::Probe::Want RawHelloProbe::fail(ProbeError error, std::string detail) {
  obs_.error = error;
  obs_.error_detail = std::move(detail);
  if (phase_ != Phase::connecting && obs_.handshake_ms == 0) obs_.handshake_ms = ms_between(t_connected_, Clock::now());
  phase_ = Phase::done;
  fd_.reset();
  return Want::done;
}

tls::Probe::Want RawHelloProbe::finish() {
  obs_.handshake_ms = ms_between(t_connected_, Clock::now());
  // An abortive close: the chain is all we came for, and a reset frees the
  // server's slot at once and leaves no TIME_WAIT here.
  linger hard{1, 0};
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  phase_ = Phase::done;
  fd_.reset();
  return Want::done;
}

tls::Probe::Want RawHelloProbe::start() {
  t_start_ = Clock::now();
  obs_.started_unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  auto conn = tls::start_connect(target_, source_);
  if (!conn) return fail(conn.error().error, conn.error().detail);
  fd_ = std::move(conn->fd);
  if (conn->connected) {
    t_connected_ = Clock::now();
    obs_.connect_ms = ms_between(t_start_, t_connected_);
    phase_ = Phase::sending;
    return send_more();
  }
  return Want::write;
}

tls::Probe::Want RawHelloProbe::on_ready() {
  switch (phase_) {
    case Phase::connecting: {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return fail(tls::classify_connect_errno(err), std::strerror(err));
      t_connected_ = Clock::now();
      obs_.connect_ms = ms_between(t_start_, t_connected_);
      phase_ = Phase::sending;
      return send_more();
    }
    case Phase::sending: return send_more();
    case Phase::reading: return read_more();
    case Phase::done: return Want::done;
  }
  return Want::done;
}

void RawHelloProbe::time_out() {
  if (phase_ == Phase::connecting)
    fail(ProbeError::connect_timeout, "no answer to SYN before the deadline");
  else if (phase_ != Phase::done)
    fail(ProbeError::handshake_timeout, phase_ == Phase::sending ? "ClientHello not sent before the deadline"
                                                                 : "no Certificate before the deadline");
}

tls::Probe::Want RawHelloProbe::send_more() {
  while (segment_ < wire_.segments.size()) {
    size_t end = segment_ + 1 < wire_.segments.size() ? wire_.segments[segment_ + 1] : wire_.bytes.size();
    if (sent_ == wire_.segments[segment_] && segment_ > 0) {
      // A new segment leaves only once the last is acknowledged, or the
      // kernel would coalesce queued bytes into one segment.
      int unacked = 0;
      if (::ioctl(fd_.get(), SIOCOUTQ, &unacked) == 0 && unacked > 0) {
        wake_at_ = Clock::now() + kSegmentPoll;
        return Want::wait;
      }
    }
    ssize_t n = ::send(fd_.get(), wire_.bytes.data() + sent_, end - sent_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Want::write;
      return fail(tls::classify_connect_errno(errno), std::string("sending the ClientHello: ") + std::strerror(errno));
    }
    sent_ += static_cast<size_t>(n);
    if (sent_ < end) return Want::write;
    ++segment_;
  }
  phase_ = Phase::reading;
  return Want::read;
}

tls::Probe::Want RawHelloProbe::read_more() {
  uint8_t buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n == 0) return fail(ProbeError::eof, "connection closed before the server's Certificate");
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Want::read;
      return fail(tls::classify_connect_errno(errno), std::strerror(errno));
    }
    stream_.feed({buf, static_cast<size_t>(n)});
    while (auto message = stream_.next()) {
      if (message->type == hs::kServerHello) {
        auto hello = fingerprint::parse_server_hello(message->body, message->record_version);
        if (!hello) return fail(ProbeError::protocol_error, hello.error());
        obs_.tls_version = version_name(hello->negotiated_version());
        obs_.cipher = names_.name(hello->cipher);
        if (hello->alpn) obs_.alpn = *hello->alpn;
        if (hello->negotiated_version() >= 0x0304)
          return fail(ProbeError::protocol_error,
                      "the server chose TLS 1.3: its certificate is encrypted (raw hellos read TLS 1.2 chains)");
      } else if (message->type == hs::kCertificate) {
        if (obs_.tls_version.empty()) return fail(ProbeError::protocol_error, "Certificate before ServerHello");
        auto chain = fingerprint::parse_certificate_list(message->body);
        if (!chain) return fail(ProbeError::protocol_error, chain.error());
        obs_.chain = std::move(*chain);
        for (const auto& der : obs_.chain) {
          auto cert = names_.parse(der);
          if (!cert.get()) break;
          obs_.parsed.push_back(std::move(cert));
        }
        return finish();
      } else if (message->type == hs::kServerHelloDone) {
        return fail(ProbeError::protocol_error, "ServerHelloDone without a Certificate (anonymous or PSK suite)");
      }
    }
    switch (stream_.state()) {
      case fingerprint::HandshakeStream::State::reading: break;
      case fingerprint::HandshakeStream::State::alert: {
        auto alert = stream_.alert();
        obs_.alert = alert ? alert->second : -1;
        return fail(ProbeError::tls_alert,
                    std::string("alert received: ") + (alert ? SSL_alert_desc_string_long(alert->second) : "?"));
      }
      case fingerprint::HandshakeStream::State::encrypted:
        return fail(ProbeError::protocol_error, "encrypted records before the Certificate");
      default: return fail(ProbeError::protocol_error, stream_.reason());
    }
  }
}

}  // namespace mw::hello
