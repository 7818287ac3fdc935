// A TLS server farm: many listening addresses, each a "site" that picks its
// certificate chain by SNI, and optionally misbehaves the way broken or
// hostile servers do. Tests, the demo and the benchmark use it as the
// remote servers; the lab runs it inside its server namespaces.
#pragma once

#include "certs/issue.hpp"
#include "net/address.hpp"
#include "net/fd.hpp"

#include <tl/expected.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace mw::lab {

enum class SniAction {
  serve,   // complete the handshake with the rule's chain
  alert,   // answer the ClientHello with a fatal alert
  reset,   // answer the ClientHello with a TCP reset
  silent,  // read the ClientHello and never answer
};

struct SniRule {
  std::vector<std::string> names;  // exact names and their subdomains; empty: every SNI
  bool match_no_sni = false;       // also applies when no SNI is sent
  SniAction action = SniAction::serve;
  std::shared_ptr<const certs::ServedChain> chain;  // for serve
  int alert = 112;                                  // unrecognized_name, for alert
  // When set, the rule applies only while this count is above zero, and each
  // use takes one: a server that misbehaves on the first N connections.
  std::shared_ptr<std::atomic<int>> uses_left;
};

// What a site does instead of TLS: the hostile servers a scan must survive.
enum class Misbehaviour {
  none,
  garbage,       // sends plaintext that is not TLS, then closes
  drip,          // sends a TLS record header, then one byte a second, forever
  stall,         // accepts and never sends anything
  reset,         // accepts and resets the connection at once
  never_finish,  // answers the ClientHello with the start of a ServerHello, then nothing
  huge_hello,    // answers with a ServerHello announcing 16 MiB and sends 16 KiB of it every tenth of a second
};
// The names the lab's config uses ("garbage", "never-finish", ...; "huge-chain"
// is a site whose chain is 1 MiB, served by real TLS). Empty: not a name.
std::optional<Misbehaviour> misbehaviour_named(const std::string& name);

struct Site {
  std::shared_ptr<const certs::ServedChain> chain;  // the default chain
  std::vector<SniRule> rules;                        // first match wins
  Misbehaviour misbehaviour = Misbehaviour::none;
};

struct Listener {
  net::Endpoint bind;  // port 0: any free port
  std::shared_ptr<const Site> site;
  // When bound to a wildcard address, picks the site by the address the
  // client connected to; no site: the connection is closed.
  std::function<std::shared_ptr<const Site>(const net::Endpoint& local)> site_for = {};
};

// What a server saw of one ClientHello: enough to tell two clients apart.
struct HelloSeen {
  net::Endpoint peer;
  net::Endpoint local;
  std::string sni;
  // "version,ciphers,extensions" in wire order, decimal, '-' separated (JA3's layout).
  std::string shape;
};

// An HTTP request head a site received over TLS (a probe saying who it is).
struct RequestSeen {
  net::Endpoint peer;
  std::string sni;
  std::string head;  // request line and headers, up to the blank line
};

class TlsServer {
 public:
  struct Options {
    int workers = 1;
    int idle_timeout_ms = 10000;  // per connection, from the last byte
    // Called from worker threads for every ClientHello (keep it thread-safe).
    std::function<void(const HelloSeen&)> on_hello;
    // Sites answer an HTTP request with a small page, as a web server would;
    // false: they read and ignore what comes after the handshake.
    bool answer_http = true;
    // Called from worker threads for every request head (keep it thread-safe).
    std::function<void(const RequestSeen&)> on_request;
  };

  static tl::expected<std::unique_ptr<TlsServer>, std::string> start(std::vector<Listener> listeners,
                                                                     Options options);
  ~TlsServer();
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  // The address each listener ended up on (its port filled in), in order.
  const std::vector<net::Endpoint>& endpoints() const { return endpoints_; }
  uint64_t handshakes_completed() const { return completed_.load(); }
  void stop();

 private:
  class Worker;
  TlsServer() = default;

  std::vector<net::Endpoint> endpoints_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<uint64_t> completed_{0};
};

}  // namespace mw::lab
