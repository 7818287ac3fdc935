// The ClientHello SNI reader, on the 2019 study's own ClientHellos and on our scanner's.
#include "fingerprint/sni.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

using namespace mw;
using fingerprint::HelloStatus;

namespace {

std::vector<uint8_t> from_hex_file(const std::string& path) {
  std::string text = test::read_file(path), digits;
  for (char c : text)
    if (std::isxdigit(static_cast<unsigned char>(c))) digits.push_back(c);
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < digits.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<uint8_t> from_file(const std::string& path) {
  std::string s = test::read_file(path);
  return {s.begin(), s.end()};
}

}  // namespace

TEST(Sni, ReadsThe2019ClientHellos) {
  auto fb = from_hex_file(std::string(MW_SHARED_DATA) + "/clienthellos/fb-2019.hex");
  auto r = fingerprint::client_hello_sni(fb.data(), fb.size());
  EXPECT_EQ(r.status, HelloStatus::ok);
  ASSERT_TRUE(r.sni);
  EXPECT_EQ(*r.sni, "www.facebook.com");
  auto norm = from_hex_file(std::string(MW_SHARED_DATA) + "/clienthellos/norm-2019.hex");
  r = fingerprint::client_hello_sni(norm.data(), norm.size());
  EXPECT_EQ(r.status, HelloStatus::ok);
  EXPECT_FALSE(r.sni);
}

TEST(Sni, ReadsOurScannersClientHello) {
  auto vk = from_file(std::string(MW_SOURCE_DIR) + "/fuzz/corpus/sni/mitmwatch-vk-com.bin");
  auto r = fingerprint::client_hello_sni(vk.data(), vk.size());
  ASSERT_TRUE(r.sni);
  EXPECT_EQ(*r.sni, "vk.com");
}

TEST(Sni, EveryTruncationIsIncompleteOrRefusedNeverWrong) {
  auto fb = from_hex_file(std::string(MW_SHARED_DATA) + "/clienthellos/fb-2019.hex");
  for (size_t n = 0; n < fb.size(); ++n) {
    auto r = fingerprint::client_hello_sni(fb.data(), n);
    EXPECT_NE(r.status, HelloStatus::ok) << n;
    EXPECT_FALSE(r.sni) << n;
  }
  const uint8_t not_tls[] = "GET / HTTP/1.1\r\n\r\n";
  EXPECT_EQ(fingerprint::client_hello_sni(not_tls, sizeof not_tls).status, HelloStatus::not_client_hello);
  // A record header whose hello claims more than the record holds.
  std::vector<uint8_t> lying = fb;
  lying[6] = 0x7f;
  EXPECT_NE(fingerprint::client_hello_sni(lying.data(), lying.size()).status, HelloStatus::ok);
}
