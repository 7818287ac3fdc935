// A probe that sends a hand-built ClientHello over a plain non-blocking TCP
// socket, segment by segment as planned, and reads the server's flight with
// the bounded parsers. A TLS 1.2 server sends its chain in clear, so the
// chain is in hand without any key exchange: the probe stops at the
// Certificate message and resets the connection (cert-grab).
// A server that picks TLS 1.3 encrypts its chain: the probe then records the
// version and a protocol error saying so (docs/sweep.md).
#pragma once

#include "fingerprint/handshake_stream.hpp"
#include "hello/client_hello.hpp"
#include "net/address.hpp"
#include "net/fd.hpp"
#include "tls/ossl.hpp"
#include "tls/probe.hpp"

#include <optional>
#include <unordered_map>
#include <string>

namespace mw::hello {

// What the raw probes of one driver share: OpenSSL's names for cipher suite
// ids (so raw and OpenSSL probes write the same "cipher" field), and the
// certificates already parsed. d2i_X509 is most of a raw probe's CPU under
// OpenSSL 3.0, and a scan sees the same chain again and again (control and
// test of a host, one intermediate for many hosts). One per driver; not thread-safe.
class ProbeCache {
 public:
  ProbeCache();
  std::string name(uint16_t id) const;
  // The certificate of these DER bytes, parsed once; null when it does not parse.
  tls::X509Ref parse(const tls::Der& der);

 private:
  tls::SslCtxPtr ctx_;
  tls::SslPtr ssl_;
  std::unordered_map<std::string, tls::X509Ref> parsed_;
  static constexpr size_t kMaxParsed = 8192;
};

class RawHelloProbe final : public tls::Probe {
 public:
  // `sni` is what the record calls the probe's SNI (the first server_name sent).
  RawHelloProbe(const net::Endpoint& target, Wire wire, std::string sni, const std::optional<net::IpAddress>& source,
                ProbeCache& names);

  Want start() override;
  Want on_ready() override;
  void time_out() override;
  int fd() const override { return fd_.get(); }
  bool connecting() const override { return phase_ == Phase::connecting; }
  Clock::time_point wake_at() const override { return wake_at_; }
  tls::Observation take() override { return std::move(obs_); }

 private:
  enum class Phase { connecting, sending, reading, done };
  Want fail(tls::ProbeError error, std::string detail);
  Want finish();
  Want send_more();
  Want read_more();

  net::Endpoint target_;
  Wire wire_;
  std::optional<net::IpAddress> source_;
  ProbeCache& names_;
  net::Fd fd_;
  Phase phase_ = Phase::connecting;
  size_t segment_ = 0;  // next segment to send
  size_t sent_ = 0;     // bytes of the wire sent
  Clock::time_point t_start_, t_connected_, wake_at_;
  // 64 KiB per message, as the OpenSSL profile's max_cert_list: what a hostile server can make us hold.
  fingerprint::HandshakeStream stream_{64 * 1024, false};
  tls::Observation obs_;
};

}  // namespace mw::hello
