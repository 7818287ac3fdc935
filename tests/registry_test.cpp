// The registry of known interception roots, on the real Qaznet and ISCA roots.
#include "certs/registry.hpp"
#include "certs/x509.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

using namespace mw;

namespace {

std::vector<std::string> shared_roots() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(std::string(MW_SHARED_DATA) + "/certs"))
    if (e.path().extension() == ".pem") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(Registry, BuiltinHoldsEveryRootOfTheSharedData) {
  auto reg = certs::InterceptorRegistry::builtin();
  auto files = shared_roots();
  ASSERT_EQ(files.size(), 5u);
  for (const auto& f : files) {
    auto certs = certs::read_pem_file(f);
    ASSERT_TRUE(certs) << certs.error();
    X509* root = certs->front().get();
    auto hit = reg.match({root});
    ASSERT_TRUE(hit) << f;
    EXPECT_EQ(hit->how, "holds-root");
    bool qaznet = f.find("qaznet") != std::string::npos;
    EXPECT_NE(hit->name.find(qaznet ? "Qaznet" : "ISCA"), std::string::npos) << hit->name;
  }
}

TEST(Registry, MatchesByKeyWhenTheCertificateIsNew) {
  // A certificate carrying the Qaznet root's public key but signed by someone
  // else: matched by SPKI hash, as a re-issued root would be.
  auto qaznet = certs::read_pem_file(std::string(MW_SHARED_DATA) + "/certs/qaznet-trust-network-root-2016.pem");
  ASSERT_TRUE(qaznet);
  auto other = certs::make_root({{"CN", "Re-issuer"}});
  certs::CertSpec spec;
  spec.subject = {{"CN", "Qaznet Trust Network (again)"}};
  spec.is_ca = true;
  auto reissued = certs::issue(spec, X509_get0_pubkey(qaznet->front().get()), &other);
  auto hit = certs::InterceptorRegistry::builtin().match({reissued.get()});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->how, "holds-key");
  EXPECT_EQ(certs::spki_sha256(reissued.get()), certs::spki_sha256(qaznet->front().get()));
}

TEST(Registry, MatchesAChainSignedByARegisteredRoot) {
  auto root = certs::make_root({{"CN", "Test Interception Root"}});
  auto intermediate = certs::make_intermediate(root, {{"CN", "Security Certificate"}});
  auto leaf = certs::make_leaf(intermediate, {"facebook.com"});
  certs::InterceptorRegistry reg;
  reg.add("test interceptor", "unit test", root.cert.get());
  auto hit = reg.match({leaf.leaf.get(), intermediate.cert.get()});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->how, "signed-by-root");
  EXPECT_EQ(hit->chain_index, 1u);
  // Same issuer name, other key: no match.
  auto impostor = certs::make_root({{"CN", "Test Interception Root"}});
  auto impostor_leaf = certs::make_leaf(impostor, {"facebook.com"});
  EXPECT_FALSE(reg.match({impostor_leaf.leaf.get()}));
}

TEST(Registry, RejectsBrokenFilesWithReasons) {
  auto bad = [](const std::string& text) {
    auto r = certs::InterceptorRegistry::from_json(text, "reg.json");
    EXPECT_FALSE(r);
    return r ? std::string() : r.error();
  };
  EXPECT_NE(bad("not json").find("reg.json"), std::string::npos);
  EXPECT_NE(bad("{\"roots\": 3}").find("roots"), std::string::npos);
  EXPECT_NE(bad("{\"roots\": [{\"name\": \"x\", \"pem\": \"junk\"}]}").find("roots[0]"), std::string::npos);
  auto root = certs::make_root({{"CN", "x"}});
  nlohmann::json doc = {{"roots",
                         {{{"name", "x"}, {"pem", certs::to_pem(root.cert.get())}, {"cert_sha256", "00"}}}}};
  EXPECT_NE(bad(doc.dump()).find("cert_sha256 does not match"), std::string::npos);
  auto missing = certs::InterceptorRegistry::from_file("/nonexistent/reg.json");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find("/nonexistent/reg.json"), std::string::npos);
}

TEST(Registry, DataFileHashesAgreeWithOpenssl) {
  // The committed data file loads (its hashes are checked on load).
  auto reg = certs::InterceptorRegistry::from_file(std::string(MW_SOURCE_DIR) + "/data/interceptors.json");
  ASSERT_TRUE(reg) << reg.error();
  EXPECT_EQ(reg->roots().size(), 5u);
}
