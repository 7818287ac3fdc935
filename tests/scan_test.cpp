// The scan driver against real TLS servers on 127.0.0.0/8.
#include "drivers/scan.hpp"
#include "lab/stand_in.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>

using namespace mw;
using verdict::Verdict;

namespace {

class ScanTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new lab::StandInWorld(); }
  static void TearDownTestSuite() { delete world_; }

  void SetUp() override {
    trust_.add(world_->public_root().cert.get());
    auto p = tls::ClientProfile::browser_like();
    ASSERT_TRUE(p);
    profile_ = std::make_unique<tls::ClientProfile>(std::move(*p));
  }

  // Starts one server per site, each on its own loopback address.
  std::vector<net::Endpoint> serve(std::vector<std::shared_ptr<lab::Site>> sites) {
    std::vector<lab::Listener> listeners;
    for (size_t i = 0; i < sites.size(); ++i)
      listeners.push_back({{*net::IpAddress::parse("127.88.0." + std::to_string(i + 1)), 0}, sites[i]});
    auto s = lab::TlsServer::start(std::move(listeners), {});
    EXPECT_TRUE(s) << s.error();
    server_ = std::move(*s);
    return server_->endpoints();
  }

  std::vector<records::ScanRecord> scan(const std::vector<net::Endpoint>& targets, drivers::ScanOptions options) {
    std::vector<net::TargetSpec> specs;
    for (const auto& e : targets) specs.push_back({{e.ip, e.ip.bits()}, e.port, e.to_string()});
    net::TargetFilter filter;
    filter.allow_reserved = true;
    net::TargetStream stream(specs, filter);
    std::vector<records::ScanRecord> out;
    drivers::ScanHooks hooks;
    hooks.on_record = [&](records::ScanRecord&& r) { out.push_back(std::move(r)); };
    drivers::Scanner scanner(options, *profile_, trust_, registry_);
    last_stats_ = scanner.run(stream, hooks);
    return out;
  }

  static drivers::ScanOptions options(std::vector<std::string> snis = {"facebook.com"}) {
    drivers::ScanOptions o;
    o.test_snis = std::move(snis);
    o.control_sni = "qzvtrmplkxwa.example.com";
    o.connect_timeout = std::chrono::milliseconds(2000);
    o.handshake_timeout = std::chrono::milliseconds(1500);
    return o;
  }

  static std::vector<std::string> roles(const records::ScanRecord& r) {
    std::vector<std::string> out;
    for (const auto& a : r.attempts) out.push_back(a.role);
    return out;
  }

  static lab::StandInWorld* world_;
  tls::TrustStore trust_ = tls::TrustStore::empty();
  certs::InterceptorRegistry registry_ = certs::InterceptorRegistry::builtin();
  std::unique_ptr<tls::ClientProfile> profile_;
  std::unique_ptr<lab::TlsServer> server_;
  drivers::ScanStats last_stats_;
};
lab::StandInWorld* ScanTest::world_ = nullptr;

}  // namespace

TEST_F(ScanTest, EveryVerdictFromRealServers) {
  auto eps = serve({world_->clean_site("a.example"), world_->intercepted_site("b.example"),
                    world_->blocking_site("c.example", lab::SniAction::reset),
                    world_->blocking_site("d.example", lab::SniAction::alert),
                    world_->blocking_site("e.example", lab::SniAction::silent), world_->self_signed_site("f.example")});
  auto targets = eps;
  targets.push_back({*net::IpAddress::parse("127.88.1.1"), 9});  // nothing listens
  auto records = scan(targets, options({"facebook.com", "www.google.com", "example.org"}));
  ASSERT_EQ(records.size(), targets.size() * 3);
  std::map<std::pair<std::string, std::string>, const records::ScanRecord*> by;
  for (const auto& r : records) by[{r.target.to_string(), r.sni}] = &r;
  auto verdict_of = [&](size_t i, const std::string& sni) {
    return by.at({targets[i].to_string(), sni})->result.verdict;
  };
  for (const char* sni : {"facebook.com", "www.google.com"}) {
    EXPECT_EQ(verdict_of(0, sni), Verdict::clean) << sni;
    EXPECT_EQ(verdict_of(1, sni), Verdict::intercepted) << sni;
    EXPECT_EQ(verdict_of(2, sni), Verdict::blocked) << sni;
    EXPECT_EQ(verdict_of(3, sni), Verdict::blocked) << sni;
    EXPECT_EQ(verdict_of(4, sni), Verdict::blocked) << sni;
    EXPECT_EQ(verdict_of(5, sni), Verdict::clean) << sni;
    EXPECT_EQ(verdict_of(6, sni), Verdict::unreachable) << sni;
  }
  // A name outside the trigger list is left alone everywhere.
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(verdict_of(i, "example.org"), Verdict::clean) << i;
  // What each failure looked like.
  auto test_error = [&](size_t i) {
    return tls::error_name(by.at({targets[i].to_string(), "facebook.com"})->attempts[1].observation);
  };
  EXPECT_EQ(test_error(2), "reset");
  EXPECT_EQ(test_error(3), "tls-alert:112");
  EXPECT_EQ(test_error(4), "handshake-timeout");
  EXPECT_EQ(tls::error_name(by.at({targets[6].to_string(), "facebook.com"})->attempts[0].observation),
            "connect-refused");
  // The interception record holds both chains in full.
  const auto* hit = by.at({targets[1].to_string(), "facebook.com"});
  EXPECT_EQ(hit->attempts[0].observation.chain.size(), 2u);
  EXPECT_EQ(hit->attempts[1].observation.chain.size(), 2u);
  EXPECT_NE(hit->attempts[0].observation.chain[0], hit->attempts[1].observation.chain[0]);
  EXPECT_TRUE(hit->attempts[0].observation.trust.trusted);
  EXPECT_FALSE(hit->attempts[1].observation.trust.trusted);
  EXPECT_FALSE(hit->attempts[1].observation.interceptor.has_value());  // unknown CA, found by comparison
  EXPECT_GT(hit->attempts[1].observation.handshake_ms, 0);
  EXPECT_EQ(hit->attempts[1].observation.alpn, "http/1.1");
}

TEST_F(ScanTest, RetriesThenRechecksTheControlBeforeAnAnomalyStands) {
  auto eps = serve({world_->intercepted_site("b.example")});
  auto o = options();
  o.retries = 2;
  auto records = scan(eps, o);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(roles(records[0]), (std::vector<std::string>{"control", "test", "test", "test", "control-recheck"}));
  EXPECT_EQ(records[0].intercepted_attempts, 3u);
  o.retries = 0;
  records = scan(eps, o);
  EXPECT_EQ(roles(records[0]), (std::vector<std::string>{"control", "test", "control-recheck"}));
}

TEST_F(ScanTest, ATransientErrorIsForgivenByARetry) {
  auto site = world_->blocking_site("c.example", lab::SniAction::reset);
  site->rules[0].uses_left = std::make_shared<std::atomic<int>>(1);
  auto records = scan(serve({site}), options());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].result.verdict, Verdict::clean);
  EXPECT_EQ(roles(records[0]), (std::vector<std::string>{"control", "test", "test"}));
  EXPECT_EQ(tls::error_name(records[0].attempts[1].observation), "reset");
}

TEST_F(ScanTest, OneForgeryAmongCleanAttemptsStillCounts) {
  auto site = world_->intercepted_site("b.example");
  site->rules[0].uses_left = std::make_shared<std::atomic<int>>(1);
  auto records = scan(serve({site}), options());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].result.verdict, Verdict::intercepted);
  EXPECT_EQ(records[0].intercepted_attempts, 1u);
  EXPECT_EQ(roles(records[0]), (std::vector<std::string>{"control", "test", "test", "control-recheck"}));
}

TEST_F(ScanTest, ControlWithoutSni) {
  auto site = world_->intercepted_site("b.example");
  auto o = options();
  o.control_sni.clear();
  auto records = scan(serve({site}), o);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(records[0].attempts[0].observation.sni.empty());
  EXPECT_FALSE(records[0].attempts[0].observation.trust.name_match.has_value());
  EXPECT_EQ(records[0].result.verdict, Verdict::intercepted);
}

TEST_F(ScanTest, HostileServersCostOneResultEach) {
  auto garbage = world_->clean_site("g.example");
  garbage->misbehaviour = lab::Misbehaviour::garbage;
  auto drip = world_->clean_site("d.example");
  drip->misbehaviour = lab::Misbehaviour::drip;
  auto stall = world_->clean_site("s.example");
  stall->misbehaviour = lab::Misbehaviour::stall;
  auto reset_all = world_->clean_site("r.example");
  reset_all->rules.push_back({{}, true, lab::SniAction::reset, nullptr, 0, nullptr});
  // About 1 MiB of certificates: 17 intermediates of 60 KiB each.
  auto huge = world_->clean_site("h.example");
  {
    auto chain = std::make_shared<certs::ServedChain>();
    chain->key = certs::make_ec_p256_key();
    chain->leaf = tls::share(huge->chain->leaf.get());
    chain->key = tls::share(huge->chain->key.get());
    auto filler_key = certs::make_ec_p256_key();
    for (int i = 0; i < 17; ++i) {
      certs::CertSpec spec;
      spec.subject = {{"CN", "filler " + std::to_string(i)}};
      spec.is_ca = true;
      spec.padding_extension_bytes = 60 * 1024;
      chain->intermediates.push_back(certs::issue(spec, filler_key.get(), nullptr));
    }
    huge->chain = chain;
  }
  std::vector<std::shared_ptr<lab::Site>> sites{garbage, drip, stall, reset_all, huge};
  for (int i = 0; i < 10; ++i) sites.push_back(world_->clean_site("ok" + std::to_string(i) + ".example"));
  auto eps = serve(sites);
  auto o = options();
  o.retries = 1;
  o.concurrency = 4;  // fewer slots than hostile servers: they must not starve the rest
  auto started = std::chrono::steady_clock::now();
  auto records = scan(eps, o);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(records.size(), eps.size());
  std::map<std::string, const records::ScanRecord*> by;
  for (const auto& r : records) by[r.target.to_string()] = &r;
  auto control_error = [&](size_t i) { return tls::error_name(by.at(eps[i].to_string())->attempts[0].observation); };
  EXPECT_EQ(control_error(0), "protocol-error");
  EXPECT_EQ(control_error(1), "handshake-timeout");
  EXPECT_EQ(control_error(2), "handshake-timeout");
  EXPECT_EQ(control_error(3), "reset");
  EXPECT_EQ(control_error(4), "protocol-error");
  EXPECT_NE(by.at(eps[4].to_string())->attempts[0].observation.error_detail.find("excessive message size"),
            std::string::npos);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(by.at(eps[i].to_string())->result.verdict, Verdict::unreachable);
  for (size_t i = 5; i < eps.size(); ++i) EXPECT_EQ(by.at(eps[i].to_string())->result.verdict, Verdict::clean);
  // Bounded by the timeouts: the slow servers took 3 handshake timeouts each
  // (control, test, retry) at most, in parallel with everything else.
  EXPECT_LT(secs, 20.0);
}

TEST_F(ScanTest, ControlOnlyModeReportsTrust) {
  auto eps = serve({world_->clean_site("a.example"), world_->self_signed_site("b.example")});
  auto o = options({});
  auto records = scan(eps, o);
  ASSERT_EQ(records.size(), 2u);
  std::map<std::string, bool> trusted;
  for (const auto& r : records) {
    ASSERT_EQ(r.attempts.size(), 1u);
    trusted[r.target.to_string()] = r.attempts[0].observation.trust.trusted;
  }
  EXPECT_TRUE(trusted.at(eps[0].to_string()));
  EXPECT_FALSE(trusted.at(eps[1].to_string()));
}

TEST_F(ScanTest, RateCapSpacesHandshakes) {
  std::vector<std::shared_ptr<lab::Site>> sites;
  for (int i = 0; i < 5; ++i) sites.push_back(world_->clean_site("r" + std::to_string(i) + ".example"));
  auto o = options();
  o.rate = 20;  // 10 handshakes (5 controls + 5 tests) at 20/s: at least ~0.45 s
  auto started = std::chrono::steady_clock::now();
  auto records = scan(serve(sites), o);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(records.size(), 5u);
  EXPECT_EQ(last_stats_.handshakes, 10u);
  EXPECT_GE(secs, 0.4);
}

TEST_F(ScanTest, Ipv6Targets) {
  std::vector<lab::Listener> listeners{{{*net::IpAddress::parse("::1"), 0}, world_->intercepted_site("v6.example")}};
  auto s = lab::TlsServer::start(std::move(listeners), {});
  if (!s) GTEST_SKIP() << "no IPv6 loopback here: " << s.error();
  server_ = std::move(*s);
  auto records = scan(server_->endpoints(), options());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].target.ip.family, AF_INET6);
  EXPECT_EQ(records[0].result.verdict, Verdict::intercepted);
  EXPECT_EQ(records::to_json(records[0])["target"], "[::1]:" + std::to_string(server_->endpoints()[0].port));
}

// The per-target rate spaces one address's handshakes (a burst of at most the
// rate, then the rate), while other addresses' go on: a lower bound on time,
// which no machine can beat.
TEST_F(ScanTest, ThePerTargetRateSpacesOneAddresssHandshakes) {
  auto eps = serve({world_->clean_site("a.example"), world_->clean_site("b.example")});
  std::vector<std::string> snis;
  for (int i = 0; i < 8; ++i) snis.push_back("s" + std::to_string(i) + ".example");
  auto o = options(snis);
  o.per_target_rate = 4;  // a burst of 4, then 4 a second: 9 handshakes to an address take >= 1.25 s
  auto t0 = std::chrono::steady_clock::now();
  auto records = scan(eps, o);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(records.size(), 16u);
  EXPECT_EQ(last_stats_.handshakes, 18u);
  EXPECT_GE(secs, 1.2) << "9 handshakes to one address at 4 a second after a burst of 4";
  for (const auto& r : records) EXPECT_EQ(r.result.verdict, verdict::Verdict::clean);
}

// --contact: each completed handshake says who is scanning in one HEAD
// request, which the site receives with the SNI as Host; the status is kept.
TEST_F(ScanTest, AnIdentifyingScanSendsItsContactToEachSite) {
  std::mutex mu;
  std::vector<lab::RequestSeen> seen;
  lab::TlsServer::Options so;
  so.on_request = [&](const lab::RequestSeen& r) {
    std::lock_guard lock(mu);
    seen.push_back(r);
  };
  std::vector<lab::Listener> listeners{{{*net::IpAddress::parse("127.88.1.1"), 0}, world_->clean_site("a.example")},
                                       {{*net::IpAddress::parse("127.88.1.2"), 0}, world_->intercepted_site("b.example")}};
  auto s = lab::TlsServer::start(std::move(listeners), so);
  ASSERT_TRUE(s) << s.error();
  server_ = std::move(*s);
  std::string ua = tls::contact_user_agent("mailto:scans@example.org");
  EXPECT_EQ(ua, std::string("mitmwatch/") + MW_VERSION + " (+mailto:scans@example.org)");
  auto p = tls::ClientProfile::browser_like(ua);
  ASSERT_TRUE(p);
  profile_ = std::make_unique<tls::ClientProfile>(std::move(*p));

  auto records = scan(server_->endpoints(), options());
  ASSERT_EQ(records.size(), 2u);
  size_t attempts = 0;
  for (const auto& r : records)
    for (const auto& a : r.attempts) {
      ++attempts;
      EXPECT_TRUE(a.observation.request_sent) << a.role;
      EXPECT_EQ(a.observation.http_status, 200) << a.role;
      EXPECT_EQ(a.observation.alpn, "http/1.1");
      EXPECT_EQ(records::to_json(a.observation, a.role)["http_status"], 200);
    }
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), attempts);  // one request per handshake (the forged site's retries too)
  std::set<std::string> hosts;
  for (const auto& r : seen) {
    EXPECT_EQ(r.head.rfind("HEAD / HTTP/1.1\r\n", 0), 0u) << r.head;
    EXPECT_NE(r.head.find("\r\nUser-Agent: " + ua + "\r\n"), std::string::npos) << r.head;
    EXPECT_NE(r.head.find("\r\nHost: " + r.sni + "\r\n"), std::string::npos) << r.head;
    hosts.insert(r.sni);
  }
  EXPECT_EQ(hosts, (std::set<std::string>{"facebook.com", "qzvtrmplkxwa.example.com"}));
}

// A site that completes the handshake but never answers the request costs the
// short identify wait, not the handshake timeout, and its record stays ok.
TEST_F(ScanTest, ASiteThatIgnoresTheRequestStillGivesItsChain) {
  lab::TlsServer::Options so;
  so.answer_http = false;
  std::vector<lab::Listener> listeners{{{*net::IpAddress::parse("127.88.1.3"), 0}, world_->clean_site("c.example")}};
  auto s = lab::TlsServer::start(std::move(listeners), so);
  ASSERT_TRUE(s) << s.error();
  server_ = std::move(*s);
  auto p = tls::ClientProfile::browser_like("mitmwatch-test");
  ASSERT_TRUE(p);
  profile_ = std::make_unique<tls::ClientProfile>(std::move(*p));
  auto o = options();
  o.handshake_timeout = std::chrono::milliseconds(60000);
  auto t0 = std::chrono::steady_clock::now();
  auto records = scan(server_->endpoints(), o);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].result.verdict, Verdict::clean);
  for (const auto& a : records[0].attempts) {
    EXPECT_TRUE(a.observation.ok());
    EXPECT_TRUE(a.observation.request_sent);
    EXPECT_EQ(a.observation.http_status, -1);
    EXPECT_TRUE(records::to_json(a.observation, a.role)["http_status"].is_null());
  }
  EXPECT_LT(secs, 30) << "the identify wait (2 s) ends it, not the 60 s handshake timeout";
}

TEST_F(ScanTest, AScanThatDoesNotIdentifySendsNothingAfterTheHandshake) {
  std::atomic<int> requests{0};
  lab::TlsServer::Options so;
  so.on_request = [&](const lab::RequestSeen&) { ++requests; };
  std::vector<lab::Listener> listeners{{{*net::IpAddress::parse("127.88.1.4"), 0}, world_->clean_site("d.example")}};
  auto s = lab::TlsServer::start(std::move(listeners), so);
  ASSERT_TRUE(s) << s.error();
  server_ = std::move(*s);
  auto records = scan(server_->endpoints(), options());
  ASSERT_EQ(records.size(), 1u);
  for (const auto& a : records[0].attempts) {
    EXPECT_FALSE(a.observation.request_sent);
    EXPECT_FALSE(records::to_json(a.observation, a.role).contains("http_status"));
  }
  EXPECT_EQ(requests.load(), 0);
}
