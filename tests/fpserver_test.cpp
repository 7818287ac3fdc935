// The fingerprint server on 127.0.0.1 (port 0), with real TLS clients and
// hostile ones: what it records, what it shows the client, what it flags,
// and that a bad client costs only its own connection.
#include "drivers/fpserver.hpp"
#include "certs/x509.hpp"
#include "fingerprint/fingerprints.hpp"
#include "net/fd.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>

#include <cctype>
#include <sstream>
#include <thread>

using namespace mw;

namespace {

net::Fd connect_to(const net::Endpoint& at) {
  sockaddr_storage addr{};
  socklen_t len = at.to_sockaddr(addr);
  net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  return fd;
}

// A blocking TLS client: GET `path` with this User-Agent; the response body.
std::string https_get(const net::Endpoint& at, const std::string& sni, const std::string& path, const std::string& ua) {
  auto fd = connect_to(at);
  tls::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  tls::SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd.get());
  SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  if (SSL_connect(ssl.get()) != 1) return "";
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + sni + "\r\nUser-Agent: " + ua + "\r\n\r\n";
  SSL_write(ssl.get(), req.data(), static_cast<int>(req.size()));
  std::string resp;
  char buf[4096];
  for (int n; (n = SSL_read(ssl.get(), buf, sizeof buf)) > 0;) resp.append(buf, static_cast<size_t>(n));
  auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

// Sends `raw` over TLS and reads until the server closes: the whole response.
std::string https_raw(const net::Endpoint& at, const std::string& sni, const std::string& raw) {
  auto fd = connect_to(at);
  tls::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  tls::SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd.get());
  SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  if (SSL_connect(ssl.get()) != 1) return "";
  SSL_write(ssl.get(), raw.data(), static_cast<int>(raw.size()));
  std::string resp;
  char buf[4096];
  for (int n; (n = SSL_read(ssl.get(), buf, sizeof buf)) > 0;) resp.append(buf, static_cast<size_t>(n));
  return resp;
}

// A site's backend on 127.0.0.1 (cpp-httplib): answers every GET and POST with
// the request's headers as JSON, so a test sees what the front passed on.
class EchoBackend {
 public:
  explicit EchoBackend(time_t keep_alive_seconds = 5) {
    server_.set_keep_alive_timeout(keep_alive_seconds);
    auto echo = [](const httplib::Request& req, httplib::Response& res) {
      nlohmann::json h = nlohmann::json::object();
      for (const auto& [k, v] : req.headers) h[k] = v;
      res.set_content(nlohmann::json{{"path", req.path}, {"headers", h}, {"body", req.body}}.dump(), "application/json");
    };
    server_.Get(".*", echo);
    server_.Post(".*", echo);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~EchoBackend() {
    server_.stop();
    thread_.join();
  }
  net::Endpoint at() const { return {*net::IpAddress::parse("127.0.0.1"), static_cast<uint16_t>(port_)}; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

std::string body_of(const std::string& response) {
  auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

const std::string kChromeUa =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

class FpServerTest : public ::testing::Test {
 protected:
  void start(drivers::FpServerOptions o = {}, const fingerprint::Expectations* expect = nullptr) {
    o.listen = {*net::IpAddress::parse("127.0.0.1"), 0};
    auto s = drivers::FpServer::open(o, certs::make_self_signed("fp.test"));
    ASSERT_TRUE(s) << s.error();
    server_ = std::move(*s);
    ctx_ = {&registry_, expect, &browsers_};
    thread_ = std::thread([this] {
      server_->run(ctx_, stop_, [this](const nlohmann::ordered_json& r) {
        std::lock_guard lock(mu_);
        log_.push_back(nlohmann::json::parse(r.dump()));
      });
    });
  }
  void TearDown() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Stops the server and closes what it holds (its kept backend connections),
  // before a test's backend goes away.
  void stop() {
    TearDown();
    server_.reset();
  }
  // The log, once it holds n records (or after 5 s).
  std::vector<nlohmann::json> log(size_t n) {
    for (int i = 0; i < 100; ++i) {
      {
        std::lock_guard lock(mu_);
        if (log_.size() >= n) return log_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::lock_guard lock(mu_);
    return log_;
  }

  fingerprint::FingerprintRegistry registry_ = fingerprint::FingerprintRegistry::builtin();
  fingerprint::BrowserTable browsers_ = fingerprint::BrowserTable::builtin();
  drivers::FpServerContext ctx_;
  std::unique_ptr<drivers::FpServer> server_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<nlohmann::json> log_;
};

}  // namespace

TEST_F(FpServerTest, RecordsTheRawHelloItsFingerprintsAndTheSyn) {
  drivers::FpServerOptions o;
  o.handshake_timeout = std::chrono::milliseconds(300);
  start(o);
  auto hello = test::read_hex_file(std::string(MW_SHARED_DATA) + "/clienthellos/fb-2019.hex");
  auto fd = connect_to(server_->local());
  // In three segments, as a slow client would send it.
  for (size_t at = 0; at < hello.size(); at += 200) {
    ASSERT_GT(::send(fd.get(), hello.data() + at, std::min<size_t>(200, hello.size() - at), 0), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  auto records = log(1);
  ASSERT_EQ(records.size(), 1u);
  const auto& r = records[0];
  EXPECT_EQ(r["sni"], "www.facebook.com");
  EXPECT_EQ(r["ja3"], "63c4972da11f7a873178a9ee53acfd9e");  // tshark's value for these bytes
  EXPECT_EQ(r["client_hello"], certs::hex(hello.data(), hello.size()));
  EXPECT_EQ(r["syn"]["ttl"], 64);
  EXPECT_NE(r["syn"]["options"].get<std::string>().find("mss"), std::string::npos);
  EXPECT_EQ(r["end"], "handshake-timeout");  // it never sent the rest of the handshake
}

TEST_F(FpServerTest, ShowsTheClientItsOwnFingerprintAndFlagsAMismatchedUserAgent) {
  // First learn what this TLS client sends, then expect it from "mw-probe" only.
  start();
  auto first = nlohmann::json::parse(https_get(server_->local(), "fp.test", "/json", "mw-probe/1"));
  ASSERT_TRUE(first["ja4"].is_string()) << first;
  EXPECT_EQ(first["http"]["user_agent"], "mw-probe/1");
  EXPECT_EQ(first["tls"]["done"], true);
  EXPECT_TRUE(first["flags"].empty());
  TearDown();

  auto expect = fingerprint::Expectations::from_json(
      R"({"user_agents": [{"contains": "mw-probe", "ja4": [")" + first["ja4"].get<std::string>() +
          R"("]}, {"contains": "Firefox", "ja4": ["t13d1715h2_5b57614c22b0_3d5424432f57"]}]})",
      "expect.json");
  ASSERT_TRUE(expect) << expect.error();
  stop_ = false;
  log_.clear();
  start({}, &*expect);
  auto as_probe = nlohmann::json::parse(https_get(server_->local(), "fp.test", "/json", "mw-probe/1"));
  EXPECT_TRUE(as_probe["flags"].empty()) << as_probe["flags"];
  // The same client claiming to be Firefox does not send Firefox's hello.
  auto as_firefox = nlohmann::json::parse(https_get(server_->local(), "fp.test", "/json", "Mozilla/5.0 Firefox/120"));
  ASSERT_EQ(as_firefox["flags"].size(), 1u) << as_firefox;
  EXPECT_EQ(as_firefox["flags"][0]["kind"], "fingerprint-mismatch");
  auto page = https_get(server_->local(), "fp.test", "/", "mw-probe/1");
  EXPECT_NE(page.find("Your TLS fingerprint"), std::string::npos);
  EXPECT_NE(page.find(first["ja4"].get<std::string>()), std::string::npos);
  EXPECT_EQ(log(3).size(), 3u);
}

TEST_F(FpServerTest, HostileClientsCostOnlyTheirOwnConnection) {
  drivers::FpServerOptions o;
  o.max_connections = 4;
  o.hello_timeout = std::chrono::milliseconds(400);
  start(o);
  auto at = server_->local();
  auto junk = connect_to(at);  // not TLS
  std::string get = "GET / HTTP/1.1\r\n\r\n" + std::string(20000, 'x');
  ::send(junk.get(), get.data(), get.size(), MSG_NOSIGNAL);
  auto huge = connect_to(at);  // a handshake record header promising more than a hello may hold
  std::vector<uint8_t> lie = {0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff};
  lie.resize(16389, 0x41);
  ::send(huge.get(), lie.data(), lie.size(), MSG_NOSIGNAL);
  std::vector<net::Fd> silent;  // slowloris: connect and say nothing, past the cap
  for (int i = 0; i < 6; ++i) silent.push_back(connect_to(at));
  std::this_thread::sleep_for(std::chrono::milliseconds(900));  // the silent ones time out
  // Still serving.
  auto ok = nlohmann::json::parse(https_get(at, "fp.test", "/json", "after"), nullptr, false);
  ASSERT_FALSE(ok.is_discarded());
  EXPECT_EQ(ok["end"], "served");
  std::map<std::string, int> ends;
  for (const auto& r : log(4)) ++ends[r["end"].get<std::string>()];
  EXPECT_EQ(ends["not-tls"], 1);
  EXPECT_EQ(ends["malformed-hello"], 1);
  EXPECT_GE(ends["hello-timeout"], 1);
  EXPECT_EQ(ends["served"], 1);
  EXPECT_EQ(ends["not-tls"] + ends["malformed-hello"] + ends["hello-timeout"] + ends["served"],
            static_cast<int>(log(4).size()));
}

// In front of a site: each request reaches the backend with the verdict on
// its connection, and what the client says of itself is not believed.
TEST_F(FpServerTest, InFrontOfASiteTheBackendHearsTheVerdictAndNotTheClientsClaim) {
  EchoBackend backend;
  drivers::FpServerOptions o;
  o.upstream = backend.at();
  start(o);
  auto at = server_->local();
  // An OpenSSL client claiming to be Chrome: its hello is no Chromium's.
  auto r = https_raw(at, "site.test",
                     "GET /account?x=1 HTTP/1.1\r\nHost: site.test\r\nUser-Agent: " + kChromeUa +
                         "\r\nX-Mitmwatch-Verdict: ok\r\nConnection: close\r\n\r\n");
  auto seen = nlohmann::json::parse(body_of(r), nullptr, false);
  ASSERT_FALSE(seen.is_discarded()) << r;
  EXPECT_EQ(seen["path"], "/account");
  auto verdict = seen["headers"]["X-Mitmwatch-Verdict"].get<std::string>();
  EXPECT_EQ(verdict.rfind("mismatch; reason=\"the User-Agent claims chromium", 0), 0u) << verdict;
  EXPECT_TRUE(seen["headers"]["X-Mitmwatch-JA4"].get<std::string>().rfind("t13", 0) == 0);
  EXPECT_EQ(seen["headers"]["X-Forwarded-For"], "127.0.0.1");
  EXPECT_EQ(seen["headers"]["Host"], "site.test");
  // Two requests on one connection (the second closes it), a body on the first.
  r = https_raw(at, "site.test",
                "POST /form HTTP/1.1\r\nHost: site.test\r\nUser-Agent: curl/8\r\nContent-Length: 5\r\n\r\nhello"
                "GET /second HTTP/1.1\r\nHost: site.test\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n");
  EXPECT_NE(r.find("\"body\":\"hello\""), std::string::npos) << r;
  EXPECT_NE(r.find("\"path\":\"/second\""), std::string::npos) << r;
  EXPECT_NE(r.find("unknown; reason=\\\"the User-Agent names no browser family in the table"), std::string::npos) << r;
  // The visitor's own page is answered here, not by the site.
  auto mine = nlohmann::json::parse(body_of(https_raw(at, "site.test",
                                                      "GET /.mitmwatch/json HTTP/1.1\r\nHost: site.test\r\nUser-Agent: " +
                                                          kChromeUa + "\r\nConnection: close\r\n\r\n")),
                                    nullptr, false);
  ASSERT_FALSE(mine.is_discarded());
  EXPECT_EQ(mine["verdict"]["verdict"], "mismatch");
  EXPECT_EQ(mine["verdict"]["claimed"], "chromium");
  // A chunked request body is refused with 411; a broken request with 400.
  r = https_raw(at, "site.test",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 411 ", 0), 0u) << r;
  r = https_raw(at, "site.test", "BLAH\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 400 ", 0), 0u) << r;
  // Every request is a record with its verdict.
  auto records = log(6);
  size_t with_verdict = 0;
  for (const auto& rec : records)
    if (rec["verdict"].is_object()) ++with_verdict;
  EXPECT_GE(with_verdict, 5u);
  stop();
}

// The front keeps backend connections for later requests; one the backend
// closed while idle is replaced without the visitor noticing.
TEST_F(FpServerTest, AKeptBackendConnectionTheBackendClosedIsReplaced) {
  EchoBackend backend(1);  // closes idle connections after a second
  drivers::FpServerOptions o;
  o.upstream = backend.at();
  start(o);
  auto get = [&](const std::string& path) {
    return https_raw(server_->local(), "site.test",
                     "GET " + path + " HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n");
  };
  EXPECT_NE(get("/first").find("\"path\":\"/first\""), std::string::npos);
  EXPECT_NE(get("/kept").find("\"path\":\"/kept\""), std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the kept connection is closed by now
  auto after = get("/after");
  EXPECT_EQ(after.rfind("HTTP/1.1 200 ", 0), 0u) << after;
  EXPECT_NE(after.find("\"path\":\"/after\""), std::string::npos) << after;
  stop();
}

TEST_F(FpServerTest, AKnownDevicesHelloIsInterceptedAndADeadBackendIsABadGateway) {
  // This test's OpenSSL client stands in for a known device: its JA4 in the registry.
  {
    drivers::FpServerOptions o;
    start(o);
    auto learned = nlohmann::json::parse(https_get(server_->local(), "fp.test", "/json", "x"));
    TearDown();
    registry_ = fingerprint::FingerprintRegistry::from_json(
                    R"({"fingerprints": [{"name": "a test box", "ja4": ")" + learned["ja4"].get<std::string>() + R"("}]})",
                    "test")
                    .value();
    stop_ = false;
    log_.clear();
  }
  EchoBackend backend;
  drivers::FpServerOptions o;
  o.upstream = backend.at();
  start(o);
  auto r = https_raw(server_->local(), "site.test",
                     "GET / HTTP/1.1\r\nHost: site.test\r\nUser-Agent: " + kChromeUa + "\r\nConnection: close\r\n\r\n");
  auto seen = nlohmann::json::parse(body_of(r));
  EXPECT_EQ(seen["headers"]["X-Mitmwatch-Verdict"].get<std::string>().rfind("intercepted; reason=\"the hello is a test box's own", 0), 0u)
      << seen;
  stop();
  // No backend at all: 502, and the record says why.
  stop_ = false;
  log_.clear();
  net::Endpoint nowhere = backend.at();
  nowhere.port = 1;  // nothing listens on 127.0.0.1:1
  o.upstream = nowhere;
  start(o);
  r = https_raw(server_->local(), "site.test", "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 502 ", 0), 0u) << r;
  auto records = log(1);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["end"], "bad-gateway");
  EXPECT_NE(records[0]["detail"].get<std::string>().find("upstream: connecting to 127.0.0.1:1"), std::string::npos)
      << records[0];
}

// Real Chromium (Debian's), twice: over TCP through the front, where its hello
// fits what its User-Agent claims; and over QUIC (forced), where fpserver reads
// its Initials (a post-quantum hello over two datagrams, CRYPTO frames
// shuffled) and the JA3 is tshark's.
TEST_F(FpServerTest, RealChromiumIsOkOverTcpAndItsQuicHelloIsReadAsTsharkReadsIt) {
  EchoBackend backend;
  drivers::FpServerOptions o;
  o.upstream = backend.at();
  o.quic = true;
  o.hello_timeout = std::chrono::milliseconds(2000);
  start(o);
  auto port = std::to_string(server_->local().port);
  auto page = test::run_chromium("https://127.0.0.1:" + port + "/hello", {"--ignore-certificate-errors", "--dump-dom"});
  auto verdict_at = page.out.find("X-Mitmwatch-Verdict");
  ASSERT_NE(verdict_at, std::string::npos) << page.out << page.err;
  EXPECT_EQ(page.out.substr(verdict_at, 30), "X-Mitmwatch-Verdict\":\"ok; reas") << page.out;

  test::TempDir dir;
  int chromium = test::spawn_chromium(
      "https://www.example.org/", {"--ignore-certificate-errors", "--enable-quic", "--origin-to-force-quic-on=www.example.org:443",
                                   "--host-resolver-rules=MAP www.example.org:443 127.0.0.1:" + port, "--dump-dom"},
      dir.file("chromium.log"));
  nlohmann::json quic;
  for (int i = 0; i < 300 && quic.is_null(); ++i) {
    {
      std::lock_guard lock(mu_);
      for (const auto& r : log_)
        if (r["transport"] == "quic") quic = r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(-chromium, SIGKILL);
  waitpid(chromium, nullptr, 0);
  ASSERT_FALSE(quic.is_null()) << test::read_file(dir.file("chromium.log"));
  EXPECT_EQ(quic["end"], "quic-hello") << quic;
  EXPECT_EQ(quic["sni"], "www.example.org");
  EXPECT_EQ(quic["alpn"], nlohmann::json::array({"h3"}));
  EXPECT_EQ(quic["ja4"].get<std::string>().substr(0, 4), "q13d");
  EXPECT_EQ(quic["verdict"]["looks_like"], "chromium") << "the table's QUIC shape for Chromium";
  EXPECT_GE(quic["quic"]["crypto_frames"].get<int>(), 1);
  // The datagrams as received, into a capture: tshark's JA3 is ours.
  std::vector<test::UdpFrame> frames;
  for (const auto& d : quic["quic"]["datagrams"]) {
    std::vector<uint8_t> bytes;
    auto hex = d.get<std::string>();
    for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    frames.push_back({"127.0.0.1:40000", "127.0.0.1:443", bytes});
  }
  test::write_udp_pcap(dir.file("chromium-quic.pcap"), frames);
  std::string cmd = "tshark -r " + dir.file("chromium-quic.pcap") +
                    " -Y 'tls.handshake.type == 1' -T fields -e tls.handshake.ja3_full 2>/dev/null > " + dir.file("ja3.txt");
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto theirs = test::read_file(dir.file("ja3.txt"));
  while (!theirs.empty() && theirs.back() == '\n') theirs.pop_back();
  EXPECT_EQ(theirs, quic["ja3_full"].get<std::string>());
  stop();
}

TEST(Expectations, BadFilesAreNamed) {
  for (const char* text : {"[]", R"({"sources": [{"cidr": "10.0.0.0/40", "ja4": "x"}]})",
                           R"({"sources": [{"cidr": "10.0.0.0/8"}]})", R"({"user_agents": [{"contains": "", "ja3": "x"}]})",
                           R"({})"}) {
    auto e = fingerprint::Expectations::from_json(text, "probes.json");
    ASSERT_FALSE(e) << text;
    EXPECT_NE(e.error().find("probes.json"), std::string::npos) << e.error();
  }
  auto e = fingerprint::Expectations::from_json(R"({"sources": [{"cidr": "10.61.0.0/24", "name": "probe", "ja4": "A"}]})",
                                                "ok.json");
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->check(*net::IpAddress::parse("10.61.0.9"), "", {"", "A", ""}).empty());
  EXPECT_EQ(e->check(*net::IpAddress::parse("10.61.0.9"), "", {"", "B", ""}).size(), 1u);
  EXPECT_TRUE(e->check(*net::IpAddress::parse("10.62.0.9"), "", {"", "B", ""}).empty());
}
