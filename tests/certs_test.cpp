// Certificate forensics on certificates made with known differences, each
// relation on its own, then recipes over many pairs.
#include "certs/forensics.hpp"
#include "certs/issue.hpp"
#include "certs/x509.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

using namespace mw;

namespace {

class ForensicsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pub_ = new certs::Authority(certs::make_root({{"C", "ZZ"}, {"CN", "Public Root"}}));
    kz_ = new certs::Authority(certs::make_root({{"C", "KZ"}, {"CN", "Security Certificate"}}, certs::make_rsa_key(2048)));
  }
  static void TearDownTestSuite() {
    delete pub_;
    delete kz_;
  }
  void SetUp() override { trust_.add(pub_->cert.get()); }

  static certs::CertSpec real_spec(const std::string& name) {
    certs::CertSpec s;
    s.subject = {{"CN", name}};
    s.dns_names = {name, "www." + name};
    s.serial = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa};
    return s;
  }
  static certs::Chain chain(X509* leaf, X509* ca) {
    certs::Chain c;
    c.certs.push_back(tls::X509Ref::share(leaf));
    if (ca) c.certs.push_back(tls::X509Ref::share(ca));
    return c;
  }
  certs::CertDiff diff_of(X509* real, X509* forged, X509* forged_ca = nullptr) {
    return certs::diff(chain(real, pub_->cert.get()), chain(forged, forged_ca ? forged_ca : pub_->cert.get()), trust_,
                       certs::InterceptorRegistry::builtin());
  }

  static certs::Authority* pub_;
  static certs::Authority* kz_;
  tls::TrustStore trust_ = tls::TrustStore::empty();
};
certs::Authority* ForensicsTest::pub_ = nullptr;
certs::Authority* ForensicsTest::kz_ = nullptr;

}  // namespace

TEST_F(ForensicsTest, IdenticalCertificatesDifferInNothing) {
  auto key = certs::make_ec_p256_key();
  auto c = certs::issue(real_spec("a.example"), key.get(), pub_);
  auto d = diff_of(c.get(), c.get());
  EXPECT_TRUE(d.subject_equal);
  EXPECT_TRUE(d.names_only_real.empty() && d.names_only_forged.empty());
  EXPECT_FALSE(d.key_replaced);
  EXPECT_EQ(d.not_before_shift, 0);
  EXPECT_EQ(d.not_after_shift, 0);
  EXPECT_EQ(*d.serial.low_bits_differing, 0);
  EXPECT_TRUE(d.extensions.dropped.empty() && d.extensions.added.empty() && d.extensions.kept_changed.empty());
  EXPECT_TRUE(d.real_chain.trusted);
}

TEST_F(ForensicsTest, EachRelationOnItsOwn) {
  auto key = certs::make_ec_p256_key();
  auto base = real_spec("a.example");
  auto real = certs::issue(base, key.get(), pub_);

  auto spec = base;  // subject only
  spec.subject = {{"CN", "b.example"}};
  auto d = diff_of(real.get(), certs::issue(spec, key.get(), pub_).get());
  EXPECT_FALSE(d.subject_equal);
  EXPECT_FALSE(d.key_replaced);

  spec = base;  // one SAN changed
  spec.dns_names = {"a.example", "mail.a.example"};
  d = diff_of(real.get(), certs::issue(spec, key.get(), pub_).get());
  EXPECT_TRUE(d.subject_equal);
  EXPECT_EQ(d.names_only_real, std::vector<std::string>{"www.a.example"});
  EXPECT_EQ(d.names_only_forged, std::vector<std::string>{"mail.a.example"});

  auto rsa = certs::make_rsa_key(1024, 3);  // key only (and lints)
  d = diff_of(real.get(), certs::issue(base, rsa.get(), pub_).get());
  EXPECT_TRUE(d.key_replaced);
  EXPECT_EQ(d.real.key.algorithm, "EC");
  EXPECT_EQ(d.forged.key.algorithm, "RSA");
  EXPECT_EQ(d.forged.key.bits, 1024);
  EXPECT_EQ(d.forged.key.rsa_exponent, 3u);
  EXPECT_EQ(d.forged_lints.size(), 4u);  // e < 65537, < 2048 bits, no AIA, no policies

  spec = base;  // validity: different shifts at each end
  spec.not_before_offset = base.not_before_offset - std::chrono::hours(6);
  spec.not_after_offset = base.not_after_offset + std::chrono::hours(24);
  d = diff_of(real.get(), certs::issue(spec, key.get(), pub_).get());
  EXPECT_NEAR(static_cast<double>(d.not_before_shift), -21600, 2);
  EXPECT_NEAR(static_cast<double>(d.not_after_shift), 86400, 2);

  spec = base;  // serial: low 12 bits
  spec.serial.back() ^= 0x0f;
  spec.serial[spec.serial.size() - 2] ^= 0x08;
  d = diff_of(real.get(), certs::issue(spec, key.get(), pub_).get());
  EXPECT_EQ(*d.serial.low_bits_differing, 12);
  EXPECT_EQ(d.serial.common_leading_bytes, 8u);

  spec = base;  // extensions: padding added; the same set otherwise, SAN value changed
  spec.padding_extension_bytes = 8;
  spec.dns_names = {"a.example"};
  d = diff_of(real.get(), certs::issue(spec, key.get(), pub_).get());
  ASSERT_EQ(d.extensions.added.size(), 1u);
  EXPECT_EQ(d.extensions.added[0].oid, "1.3.6.1.4.1.55555.1");
  ASSERT_EQ(d.extensions.kept_changed.size(), 1u);
  EXPECT_EQ(d.extensions.kept_changed[0].name, "subjectAltName");
  EXPECT_TRUE(d.extensions.dropped.empty());
  // Same key, so the key identifiers are kept with the same value.
  EXPECT_GE(d.extensions.kept_same.size(), 4u);
}

TEST_F(ForensicsTest, The2019RecipeIsReadOffOnePair) {
  auto key = certs::make_ec_p256_key();
  auto real = certs::issue(real_spec("iqala.example"), key.get(), pub_);
  auto fkey = certs::make_rsa_key(2048, 3);
  certs::ForgeRecipe recipe;
  recipe.serial_low_bits_replaced = 33;
  recipe.extensions = certs::ForgeRecipe::Extensions::fixed_2019;
  auto forged = certs::forge_like(real.get(), fkey.get(), *kz_, recipe);
  auto d = diff_of(real.get(), forged.get(), kz_->cert.get());
  EXPECT_TRUE(d.subject_equal);
  EXPECT_TRUE(d.names_only_real.empty() && d.names_only_forged.empty());
  EXPECT_TRUE(d.key_replaced);
  EXPECT_EQ(d.not_before_shift, -21600);
  EXPECT_EQ(d.not_after_shift, -21600);
  EXPECT_LE(*d.serial.low_bits_differing, 33);
  EXPECT_GE(d.serial.common_leading_bytes, 5u);
  // The real leaf has serverAuth; the forgery serverAuth+clientAuth: kept, with a changed value.
  std::vector<std::string> changed;
  for (const auto& e : d.extensions.kept_changed) changed.push_back(e.name);
  EXPECT_NE(std::find(changed.begin(), changed.end(), "extendedKeyUsage"), changed.end());
  EXPECT_FALSE(d.forged_chain.trusted);
  EXPECT_TRUE(d.real_chain.trusted);
  EXPECT_EQ(d.forged.issuer, "CN=Security Certificate,C=KZ");
  auto text = certs::to_text(d);
  EXPECT_NE(text.find("-6 h"), std::string::npos) << text;
  EXPECT_NE(text.find("e=3"), std::string::npos) << text;
  auto j = certs::to_json(d);
  EXPECT_EQ(j["validity"]["same_shift"], true);
}

TEST_F(ForensicsTest, AForgedChainUnderTheRealQaznetRootIsNamed) {
  auto qaznet = certs::read_pem_file(std::string(MW_SHARED_DATA) + "/certs/qaznet-trust-network-root-2016.pem");
  ASSERT_TRUE(qaznet);
  auto key = certs::make_ec_p256_key();
  auto real = certs::issue(real_spec("a.example"), key.get(), pub_);
  auto d = certs::diff(chain(real.get(), pub_->cert.get()), chain(real.get(), qaznet->front().get()), trust_,
                       certs::InterceptorRegistry::builtin());
  ASSERT_TRUE(d.forged_chain.interceptor);
  EXPECT_NE(d.forged_chain.interceptor->name.find("Qaznet"), std::string::npos);
  EXPECT_FALSE(d.real_chain.interceptor);
}

TEST_F(ForensicsTest, RecipesClusterSystemsAndHoldOnlyWhatHeldForEveryPair) {
  certs::ForgeRecipe kz2019;
  kz2019.serial_low_bits_replaced = 33;
  kz2019.extensions = certs::ForgeRecipe::Extensions::fixed_2019;
  certs::ForgeRecipe other;  // a second system: SAN only, a 24-hour shift back
  other.validity_shift = std::chrono::hours(-24);
  auto other_ca = certs::make_root({{"CN", "Other Middlebox"}});
  std::vector<certs::Pair> pairs;
  for (int host = 0; host < 8; ++host) {
    std::string name = "h" + std::to_string(host) + ".example";
    auto rkey = certs::make_ec_p256_key();
    auto real = certs::issue(real_spec(name), rkey.get(), pub_);
    auto fkey = certs::make_rsa_key(2048, 3);
    for (int connection = 0; connection < 2; ++connection) {  // the same host twice: the same key
      auto forged = certs::forge_like(real.get(), fkey.get(), *kz_, kz2019);
      pairs.push_back({name, diff_of(real.get(), forged.get(), kz_->cert.get())});
    }
    auto okey = certs::make_ec_p256_key();
    pairs.push_back({name, diff_of(real.get(), certs::forge_like(real.get(), okey.get(), other_ca, other).get())});
  }
  auto recipes = certs::infer_recipes(pairs);
  ASSERT_EQ(recipes.size(), 2u);
  const auto& kz = recipes[0];
  EXPECT_EQ(kz.pairs, 16u);
  EXPECT_EQ(kz.hosts, 8u);
  EXPECT_TRUE(kz.names_copied);
  EXPECT_EQ(kz.key_algorithm, "RSA");
  EXPECT_EQ(kz.key_bits, 2048);
  EXPECT_EQ(kz.rsa_exponent, 3u);
  EXPECT_EQ(kz.key_per_host, true);
  EXPECT_EQ(kz.validity_shift, -21600);
  ASSERT_TRUE(kz.serial_low_bits);
  EXPECT_LE(*kz.serial_low_bits, 33);
  EXPECT_GE(*kz.serial_low_bits, 28);  // fails with odds ~(1/32)^16
  ASSERT_TRUE(kz.extension_oids);
  EXPECT_EQ(kz.extension_oids->size(), 6u);
  EXPECT_EQ(kz.forged_issuer, "CN=Security Certificate,C=KZ");
  const auto& o = recipes[1];
  EXPECT_EQ(o.pairs, 8u);
  EXPECT_EQ(o.validity_shift, -86400);
  EXPECT_EQ(o.key_algorithm, "EC");
  EXPECT_FALSE(o.rsa_exponent);
  // Round trip, and recognition under a new root.
  auto back = certs::recipe_from_json(nlohmann::json::parse(certs::to_json(kz).dump()));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->validity_shift, kz.validity_shift);
  auto new_root = certs::make_root({{"C", "KZ"}, {"O", "ISCA"}, {"CN", "Information Security Certification Authority"}},
                                   certs::make_rsa_key(2048));
  auto rkey = certs::make_ec_p256_key();
  auto real = certs::issue(real_spec("new.example"), rkey.get(), pub_);
  auto fkey = certs::make_rsa_key(2048, 3);
  auto later = certs::forge_like(real.get(), fkey.get(), new_root, kz2019);
  EXPECT_TRUE(certs::recipe_mismatches(*back, later.get()).empty());
  EXPECT_FALSE(certs::recipe_mismatches(*back, real.get()).empty());
}

TEST_F(ForensicsTest, ShapeFingerprintIgnoresNamesAndKeysButNotStructure) {
  auto a = certs::issue(real_spec("a.example"), certs::make_ec_p256_key().get(), pub_);
  auto b = certs::issue(real_spec("completely-different.example"), certs::make_ec_p256_key().get(), pub_);
  EXPECT_EQ(certs::shape_fingerprint(a.get()), certs::shape_fingerprint(b.get()));
  EXPECT_EQ(certs::shape_fingerprint(a.get()).rfind("mwx1_", 0), 0u);
  auto spec = real_spec("a.example");
  spec.padding_extension_bytes = 4;
  auto c = certs::issue(spec, certs::make_ec_p256_key().get(), pub_);
  EXPECT_NE(certs::shape_fingerprint(a.get()), certs::shape_fingerprint(c.get()));
  auto rsa = certs::issue(real_spec("a.example"), certs::make_rsa_key(2048).get(), pub_);
  EXPECT_NE(certs::shape_fingerprint(a.get()), certs::shape_fingerprint(rsa.get()));
}

TEST(CertsCli, BadInputNamesTheFileAndExitsTwo) {
  test::TempDir dir;
  auto key = certs::make_ec_p256_key();
  certs::CertSpec spec;
  spec.subject = {{"CN", "x"}};
  auto cert = certs::issue(spec, key.get(), nullptr);
  auto der = certs::to_der(cert.get());
  test::write_file(dir.file("good.der"), std::string(der.begin(), der.end()));
  test::write_file(dir.file("truncated.der"), std::string(der.begin(), der.begin() + static_cast<long>(der.size() / 2)));
  test::write_file(dir.file("garbage.bin"), "this is not a certificate at all");
  test::write_file(dir.file("empty.pem"), "");
  test::write_file(dir.file("bad.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  for (const char* bad : {"truncated.der", "garbage.bin", "empty.pem", "bad.pem"}) {
    auto r = test::run_mitmwatch({"certs", "diff", dir.file("good.der"), dir.file(bad)});
    EXPECT_EQ(r.exit_code, 2) << bad << r.err;
    EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
  }
  auto missing = test::run_mitmwatch({"certs", "diff", dir.file("good.der"), dir.file("absent.pem")});
  EXPECT_EQ(missing.exit_code, 2);
  auto ok = test::run_mitmwatch({"certs", "diff", dir.file("good.der"), dir.file("good.der"), "--json"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"key\":{\"replaced\":false"), std::string::npos) << ok.out;
  auto base64_arg = test::run_mitmwatch({"certs", "diff", certs::base64(der), dir.file("good.der")});
  EXPECT_EQ(base64_arg.exit_code, 0) << base64_arg.err;
}
