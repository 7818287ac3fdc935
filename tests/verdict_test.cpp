// The forgery detector, on certificates made with known differences.
#include "certs/x509.hpp"
#include "lab/stand_in.hpp"
#include "support/support.hpp"
#include "verdict/verdict.hpp"

#include <gtest/gtest.h>

using namespace mw;
using verdict::Verdict;

namespace {

bool has_reason(const verdict::Comparison& c, const std::string& text) {
  for (const auto& r : c.reasons)
    if (r.find(text) != std::string::npos) return true;
  return false;
}

class VerdictTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new lab::StandInWorld(); }
  static void TearDownTestSuite() { delete world_; }

  void SetUp() override {
    trust_ = tls::TrustStore::empty();
    trust_.add(world_->public_root().cert.get());
    real_ = world_->clean_site("shop.example")->chain;
  }

  tls::Observation control() { return test::observed(*real_, "ctl.example.com", trust_); }

  certs::ServedChain forged_copy(const certs::Authority& forger) {
    certs::ServedChain f;
    f.key = certs::make_ec_p256_key();
    f.leaf = certs::forge_like(real_->leaf.get(), f.key.get(), forger);
    f.intermediates.push_back(tls::share(forger.cert.get()));
    return f;
  }

  static lab::StandInWorld* world_;
  tls::TrustStore trust_ = tls::TrustStore::empty();
  std::shared_ptr<const certs::ServedChain> real_;
};
lab::StandInWorld* VerdictTest::world_ = nullptr;

}  // namespace

TEST_F(VerdictTest, SameChainIsClean) {
  auto c = verdict::compare(test::observed(*real_, "facebook.com", trust_), control());
  EXPECT_EQ(c.verdict, Verdict::clean);
  EXPECT_FALSE(verdict::needs_retry(c));
}

TEST_F(VerdictTest, CopiedNamesNewKeyUntrustedIssuerIsInterception) {
  auto forged = forged_copy(world_->interceptor_intermediate());
  auto c = verdict::compare(test::observed(forged, "facebook.com", trust_), control());
  EXPECT_EQ(c.verdict, Verdict::intercepted);
  EXPECT_TRUE(has_reason(c, "public key replaced"));
  EXPECT_TRUE(has_reason(c, "names copied"));
  EXPECT_TRUE(has_reason(c, "issuer replaced"));
  EXPECT_TRUE(verdict::needs_retry(c));
}

TEST_F(VerdictTest, ForgeryForTheSniByAnUnknownCaIsInterception) {
  // Not a copy of the real names: a certificate made for the SNI itself.
  certs::Authority unknown = certs::make_root({{"CN", "Some Middlebox CA"}});
  auto forged = certs::make_leaf(unknown, {"facebook.com"});
  auto c = verdict::compare(test::observed(forged, "facebook.com", trust_), control());
  EXPECT_EQ(c.verdict, Verdict::intercepted);
  EXPECT_TRUE(has_reason(c, "names match the test SNI"));
}

TEST_F(VerdictTest, ADifferentTrustedCertificateIsNotInterception) {
  // A CDN serving another valid certificate for another name.
  auto other = world_->clean_site("facebook.com")->chain;
  auto c = verdict::compare(test::observed(*other, "facebook.com", trust_), control());
  EXPECT_EQ(c.verdict, Verdict::clean);
  EXPECT_TRUE(has_reason(c, "not as a forgery"));
}

TEST_F(VerdictTest, UntrustedLeafWithUnrelatedNamesIsNotInterception) {
  auto unrelated = world_->self_signed_site("default.invalid")->chain;
  auto c = verdict::compare(test::observed(*unrelated, "facebook.com", trust_), control());
  EXPECT_EQ(c.verdict, Verdict::clean);
}

TEST_F(VerdictTest, BothUntrustedButTheIssuerChangedIsInterception) {
  auto self_signed = world_->self_signed_site("shop.example")->chain;
  auto ctl = test::observed(*self_signed, "ctl.example.com", trust_);
  certs::ServedChain forged;
  forged.key = certs::make_ec_p256_key();
  forged.leaf = certs::forge_like(self_signed->leaf.get(), forged.key.get(), world_->interceptor_intermediate());
  EXPECT_EQ(verdict::compare(test::observed(forged, "facebook.com", trust_), ctl).verdict, Verdict::intercepted);
  // The same self-signed server answering with another self-signed leaf is not.
  auto again = world_->self_signed_site("shop.example")->chain;
  EXPECT_EQ(verdict::compare(test::observed(*again, "facebook.com", trust_), ctl).verdict, Verdict::clean);
}

TEST_F(VerdictTest, FailedTestWithWorkingControlIsBlocked) {
  for (auto err : {tls::ProbeError::reset, tls::ProbeError::handshake_timeout, tls::ProbeError::eof}) {
    auto c = verdict::compare(test::failed(err, "facebook.com"), control());
    EXPECT_EQ(c.verdict, Verdict::blocked);
  }
  auto alert = verdict::compare(test::failed(tls::ProbeError::tls_alert, "facebook.com", 112), control());
  EXPECT_TRUE(has_reason(alert, "tls-alert:112"));
}

TEST_F(VerdictTest, FailedControlIsUnreachable) {
  auto ctl = test::failed(tls::ProbeError::connect_refused, "ctl.example.com");
  EXPECT_EQ(verdict::compare(test::failed(tls::ProbeError::connect_refused, "facebook.com"), ctl).verdict,
            Verdict::unreachable);
  EXPECT_EQ(verdict::compare(test::observed(*real_, "facebook.com", trust_), ctl).verdict, Verdict::unreachable);
}

TEST_F(VerdictTest, KnownInterceptorIsNamedEvenWithoutAControl) {
  auto qaznet = certs::read_pem_file(std::string(MW_SHARED_DATA) + "/certs/qaznet-trust-network-root-2016.pem");
  ASSERT_TRUE(qaznet) << qaznet.error();
  certs::ServedChain chain;
  chain.key = certs::make_ec_p256_key();
  chain.leaf = certs::make_leaf(world_->interceptor_intermediate(), {"facebook.com"}).leaf;
  chain.intermediates.push_back(std::move(qaznet->front()));
  auto ctl = test::failed(tls::ProbeError::connect_timeout, "ctl.example.com");
  auto c = verdict::compare(test::observed(chain, "facebook.com", trust_), ctl);
  EXPECT_EQ(c.verdict, Verdict::intercepted);
  EXPECT_TRUE(has_reason(c, "Qaznet Trust Network")) << c.reasons.front();
}

TEST_F(VerdictTest, SettleKeepsOneForgeryButForgivesOneError) {
  auto ctl = control();
  auto clean = test::observed(*real_, "facebook.com", trust_);
  auto forged_chain = forged_copy(world_->interceptor_intermediate());
  auto forged = test::observed(forged_chain, "facebook.com", trust_);
  auto reset = test::failed(tls::ProbeError::reset, "facebook.com");

  size_t n = 0;
  auto c = verdict::settle({&forged, &clean}, ctl, &n);
  EXPECT_EQ(c.verdict, Verdict::intercepted);
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(has_reason(c, "intercepted in 1 of 2 attempts"));

  EXPECT_EQ(verdict::settle({&reset, &clean}, ctl, &n).verdict, Verdict::clean);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(verdict::settle({&reset, &reset}, ctl).verdict, Verdict::blocked);
}

TEST_F(VerdictTest, VerifyCacheGivesTheSameAnswerAndCountsHits) {
  tls::VerifyCache cache;
  auto forged_chain = forged_copy(world_->interceptor_intermediate());
  for (int round = 0; round < 2; ++round) {
    for (const certs::ServedChain* chain : {real_.get(), static_cast<const certs::ServedChain*>(&forged_chain)}) {
      std::vector<X509*> certs{chain->leaf.get()};
      for (const auto& c : chain->intermediates) certs.push_back(c.get());
      auto plain = trust_.verify(certs, "shop.example");
      auto cached = trust_.verify(certs, "shop.example", &cache);
      EXPECT_EQ(plain.trusted, cached.trusted);
      EXPECT_EQ(plain.verify_error, cached.verify_error);
      EXPECT_EQ(plain.name_match, cached.name_match);
    }
  }
  EXPECT_EQ(cache.hits(), 2u);
  // The name is checked on every call, not cached with the chain.
  std::vector<X509*> certs{real_->leaf.get(), real_->intermediates[0].get()};
  EXPECT_FALSE(*trust_.verify(certs, "other.example", &cache).name_match);
}
