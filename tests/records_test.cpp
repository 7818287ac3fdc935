// The scan record's JSON form, checked against a golden file built from fixed
// certificates. Regenerate on purpose only: UPDATE_GOLDEN=1, then review the diff.
#include "certs/issue.hpp"
#include "certs/x509.hpp"
#include "records/scan_record.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

using namespace mw;

namespace {

const std::string kData = std::string(MW_SOURCE_DIR) + "/tests/data/golden-chain/";
const std::string kGolden = std::string(MW_SOURCE_DIR) + "/tests/golden/scan-record.json";

tls::Observation fixed_observation(const std::string& leaf, const std::string& issuer, const std::string& sni,
                                   const tls::TrustStore& trust) {
  tls::Observation obs;
  obs.sni = sni;
  obs.tls_version = "TLSv1.3";
  obs.cipher = "TLS_AES_256_GCM_SHA384";
  obs.alpn = "http/1.1";
  obs.connect_ms = 1.5;
  obs.handshake_ms = 2.25;
  obs.started_unix_ms = 1563753600000;  // 2019-07-22
  for (const auto& f : {leaf, issuer}) {
    auto certs = certs::read_pem_file(kData + f);
    EXPECT_TRUE(certs) << certs.error();
    obs.chain.push_back(certs::to_der(certs->front().get()));
  }
  tls::assess(obs, trust, certs::InterceptorRegistry::builtin());
  return obs;
}

}  // namespace

TEST(Records, GoldenInterceptionRecord) {
  auto root = certs::read_pem_file(kData + "root.pem");
  ASSERT_TRUE(root);
  auto trust = tls::TrustStore::empty();
  trust.add(root->front().get());
  records::ScanRecord r;
  r.target = {*net::IpAddress::parse("192.0.2.10"), 443};
  r.sni = "facebook.com";
  r.control_sni = "qzvtrmplkxwa.example.com";
  auto control = fixed_observation("leaf.pem", "root.pem", r.control_sni, trust);
  auto test = fixed_observation("forged.pem", "forger.pem", r.sni, trust);
  r.result = verdict::compare(test, control);
  r.intercepted_attempts = 1;
  r.attempts = {{"control", control}, {"test", test}};
  std::string got = records::to_json(r).dump(2) + "\n";
  if (std::getenv("UPDATE_GOLDEN")) test::write_file(kGolden, got);
  EXPECT_EQ(got, test::read_file(kGolden)) << "regenerate with UPDATE_GOLDEN=1 and review the diff";
  EXPECT_EQ(r.result.verdict, verdict::Verdict::intercepted);
}

TEST(Records, HostileCertificateTextStaysValidUtf8) {
  auto key = certs::make_ec_p256_key();
  certs::CertSpec spec;
  spec.subject = {{"CN", "ok"}};
  auto cert = certs::issue(spec, key.get(), nullptr);
  // A subjectAltName DNS entry with raw invalid bytes, as a hostile server may send.
  const unsigned char bad[] = {'x', 0xff, 0xc0, 0x80, 'y'};
  GENERAL_NAMES* names = GENERAL_NAMES_new();
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  ASN1_STRING_set(ia5, bad, sizeof bad);
  GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
  sk_GENERAL_NAME_push(names, gn);
  ASSERT_EQ(X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names, 0, X509V3_ADD_REPLACE), 1);
  GENERAL_NAMES_free(names);
  X509_sign(cert.get(), key.get(), EVP_sha256());
  tls::Observation obs;
  obs.chain.push_back(certs::to_der(cert.get()));
  tls::parsed_chain(obs);
  std::string dumped;
  ASSERT_NO_THROW(dumped = records::to_json(obs, "test").dump());
  EXPECT_NE(dumped.find("x\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDy"), std::string::npos) << dumped;
}

TEST(Records, ResumeKeyIsTargetAndSni) {
  auto j = nlohmann::json::parse(R"({"target":"[2001:db8::1]:443","sni":"vk.com"})");
  EXPECT_EQ(records::record_key(j), records::record_key("[2001:db8::1]:443", "vk.com"));
  EXPECT_EQ(records::record_key(nlohmann::json::parse("[1,2]")), "");
  EXPECT_EQ(records::record_key(nlohmann::json::parse(R"({"target":5})")), "");
}
