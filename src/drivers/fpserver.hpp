// The fingerprint server of the report's "server we controlled" experiment:
// it reads each connection's ClientHello before OpenSSL does (MSG_PEEK, so
// the library then reads the same bytes), keeps the SYN's IP TTL and TCP
// options (TCP_SAVE_SYN), completes the handshake with its certificate and
// answers HTTP with the client's own fingerprints (a page, and JSON at /json).
// One epoll loop, edge-triggered; a cap on connections, a deadline per phase
// (hello, handshake, request) and bounded buffers, so a flood or a hostile
// client costs its own connection only. With `quic`, a UDP socket on the same
// address reads QUIC clients' Initials (quic/initial.hpp) and logs their
// ClientHellos the same way; it answers nothing, so the client gives up.
#pragma once

#include "certs/issue.hpp"
#include "certs/registry.hpp"
#include "fingerprint/expectations.hpp"
#include "fingerprint/fingerprint_registry.hpp"
#include "fingerprint/hello.hpp"
#include "fingerprint/site_verdict.hpp"
#include "net/address.hpp"

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mw::drivers {

struct FpServerOptions {
  net::Endpoint listen;
  bool quic = false;  // also a UDP socket on the same address: QUIC Initials fingerprinted (nothing answered)
  // In front of a site: requests go to this HTTP backend with the verdict
  // added (X-Mitmwatch-Verdict, -JA4, -JA3); /.mitmwatch is answered here.
  std::optional<net::Endpoint> upstream;
  size_t max_body_bytes = 1 << 20, max_response_bytes = 16 << 20;
  std::chrono::milliseconds upstream_timeout{30000};
  size_t max_connections = 1024;
  size_t max_hello_bytes = 20 * 1024;  // a ClientHello record is at most 16 KiB + header
  size_t max_request_bytes = 8 * 1024;
  std::chrono::milliseconds hello_timeout{5000}, handshake_timeout{10000}, request_timeout{10000};
};

// The SYN as the kernel saved it.
struct SynFacts {
  uint8_t ttl = 0;
  uint16_t window = 0;
  std::optional<uint16_t> mss;
  std::optional<uint8_t> window_scale;
  std::string options;  // option kinds in order, p0f-like: "mss,nop,ws,sok,ts"
};

// QUIC: the version, the client's Destination Connection ID, how its hello came.
struct FpQuic {
  uint32_t version = 0;
  std::vector<uint8_t> dcid;
  size_t initials = 0, crypto_frames = 0;
  std::vector<std::vector<uint8_t>> datagrams;  // the first few, as received
};

// One connection, as plain data.
struct FpConnection {
  char transport = 't';  // 't' TCP, 'q' QUIC
  std::chrono::system_clock::time_point accepted;
  net::Endpoint client, server;
  std::optional<SynFacts> syn;
  std::vector<uint8_t> hello_bytes;  // the TLS records up to the end of the ClientHello
  std::optional<fingerprint::ClientHello> hello;
  std::string tls_version, cipher, alpn;
  bool handshake_done = false;
  std::string method, path, user_agent;
  std::string end;  // served, no-request, not-tls, malformed-hello, hello-too-large, handshake-failed, closed, *-timeout, server-stopped; quic-hello, quic-incomplete
  std::string detail;
  std::optional<FpQuic> quic;
};

struct FpServerStats {
  uint64_t accepted = 0, refused_over_cap = 0, served = 0, logged = 0, quic_datagrams = 0, quic_hellos = 0;
};

struct FpServerContext {
  const fingerprint::FingerprintRegistry* fingerprints = nullptr;
  const fingerprint::Expectations* expectations = nullptr;  // may be null
  const fingerprint::BrowserTable* browsers = nullptr;       // null: no site verdict
};

// What the site-side alarm says of a connection (empty without a hello or a browser table).
fingerprint::SiteVerdict site_verdict(const FpConnection& c, const FpServerContext& ctx);
// The record of a connection (schema mitmwatch.fpserver/1): what the log
// holds and what /json shows the client. Field names are defined here only.
nlohmann::ordered_json fp_record(const FpConnection& c, const FpServerContext& ctx);

class FpServer {
 public:
  static tl::expected<std::unique_ptr<FpServer>, std::string> open(const FpServerOptions& options,
                                                                   const certs::ServedChain& chain);
  ~FpServer();
  net::Endpoint local() const;  // the bound address (port 0 resolved)
  // Runs until *stop; `log` gets each connection's record once, when it ends.
  FpServerStats run(const FpServerContext& ctx, const std::atomic<bool>& stop,
                    const std::function<void(const nlohmann::ordered_json&)>& log);

 private:
  FpServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mw::drivers
