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

#include <cctype>
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

class FpServerTest : public ::testing::Test {
 protected:
  void start(drivers::FpServerOptions o = {}, const fingerprint::Expectations* expect = nullptr) {
    o.listen = {*net::IpAddress::parse("127.0.0.1"), 0};
    auto s = drivers::FpServer::open(o, certs::make_self_signed("fp.test"));
    ASSERT_TRUE(s) << s.error();
    server_ = std::move(*s);
    ctx_ = {&registry_, expect};
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
