// QUIC Initials: the RFC sample packets (v1: RFC 9001 A.2, v2: RFC 9369 A.2,
// tests/data/quic/) decrypted and re-encrypted byte for byte; crafted first
// flights (CRYPTO split and shuffled across packets and datagrams, coalesced
// packets, version 2) read back; hostile input refused by name; and the JA3
// of every QUIC ClientHello in a capture equal to what tshark computes.
#include "certs/x509.hpp"
#include "fingerprint/fingerprints.hpp"
#include "hello/client_hello.hpp"
#include "quic/initial.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <map>
#include <sstream>

using namespace mw;

namespace {

std::string data(const std::string& name) { return std::string(MW_SOURCE_DIR) + "/tests/data/quic/" + name; }
const std::vector<uint8_t> kDcid{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08};

std::string hex(const std::vector<uint8_t>& b) { return certs::hex(b.data(), b.size()); }
template <size_t N>
std::string hex(const std::array<uint8_t, N>& b) {
  return certs::hex(b.data(), b.size());
}

// The RFC's unprotected payload: its CRYPTO frame, then PADDING to 1162 bytes.
std::vector<uint8_t> rfc_payload() {
  auto p = test::read_hex_file(data("rfc9001-client-initial-crypto.hex"));
  p.resize(1162, 0);
  return p;
}

// A ClientHello handshake message from a built-in template, for crafted flights.
std::vector<uint8_t> hello_message(const std::string& template_name, const std::string& sni) {
  auto t = hello::find_template(template_name).value();
  hello::HelloSpec spec;
  spec.server_names = {sni};
  uint8_t random[64] = {1, 2, 3};
  return hello::build_handshake(t.hello, spec, random);
}

std::vector<uint8_t> crypto_frame(uint64_t offset, const std::vector<uint8_t>& message, size_t from, size_t to) {
  std::vector<uint8_t> f{0x06};
  quic::append_varint(f, offset);
  quic::append_varint(f, to - from);
  f.insert(f.end(), message.begin() + static_cast<ptrdiff_t>(from), message.begin() + static_cast<ptrdiff_t>(to));
  return f;
}

std::vector<uint8_t> concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::vector<uint8_t> padded(std::vector<uint8_t> frames, size_t to) {
  if (frames.size() < to) frames.resize(to, 0);
  return frames;
}

}  // namespace

TEST(QuicInitial, ClientKeysAreTheRfcs) {
  auto k = quic::client_initial_keys(quic::kVersion1, kDcid).value();
  EXPECT_EQ(hex(k.key), "1f369613dd76d5467730efcbe3b1a22d");
  EXPECT_EQ(hex(k.iv), "fa044b2f42a3fd3b46fb255c");
  EXPECT_EQ(hex(k.hp), "9f50449e04a0e810283a1e9933adedd2");
  EXPECT_FALSE(quic::client_initial_keys(0xff00001d, kDcid)) << "a draft version: no salt known";
}

TEST(QuicInitial, DecryptsAndReEncryptsTheRfcSamplesOfBothVersions) {
  for (auto [version, file] : {std::pair{quic::kVersion1, "rfc9001-client-initial.hex"},
                               std::pair{quic::kVersion2, "rfc9369-client-initial.hex"}}) {
    SCOPED_TRACE(file);
    auto packet = test::read_hex_file(data(file));
    ASSERT_EQ(packet.size(), 1200u);
    auto packets = quic::parse_datagram(packet);
    ASSERT_TRUE(packets) << packets.error();
    ASSERT_EQ(packets->size(), 1u);
    const auto& p = packets->front();
    EXPECT_EQ(p.version, version);
    EXPECT_TRUE(p.initial);
    ASSERT_TRUE(p.decrypted) << p.problem;
    EXPECT_EQ(p.packet_number, 2u);
    EXPECT_EQ(p.dcid, kDcid);
    EXPECT_TRUE(p.scid.empty());
    EXPECT_EQ(p.payload, rfc_payload());
    // And back: the same bytes from the payload.
    EXPECT_EQ(hex(quic::protect_client_initial(version, kDcid, {}, 2, 4, rfc_payload())), hex(packet));
  }
}

TEST(QuicInitial, ReadsTheRfcClientHelloAsJa4WithQ) {
  quic::InitialReader r;
  ASSERT_TRUE(r.add(test::read_hex_file(data("rfc9001-client-initial.hex"))));
  ASSERT_TRUE(r.hello()) << r.error();
  EXPECT_EQ(r.hello()->sni, "example.com");
  EXPECT_EQ(r.hello()->alpn, std::vector<std::string>{"alpn"});
  EXPECT_EQ(r.initials(), 1u);
  EXPECT_EQ(r.crypto_frames(), 1u);
  auto ja4 = fingerprint::ja4(*r.hello(), 'q');
  // QUIC, TLS 1.3, SNI, ciphers 1301 and 1302, 11 extensions (counted by hand in the RFC hex), ALPN "alpn".
  EXPECT_EQ(ja4.ja4.substr(0, 10), "q13d0211an") << ja4.ja4;
}

TEST(QuicInitial, AHelloSplitAndShuffledAcrossPacketsAndDatagramsIsPutBackTogether) {
  auto message = hello_message("chrome", "www.facebook.com");
  ASSERT_GT(message.size(), 450u);
  size_t a = 200, b = 450;
  std::vector<uint8_t> dcid{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, scid{0xaa};
  const std::vector<uint8_t> ping{0x01}, pad{0x00}, ping_after_padding{0x00, 0x00, 0x01}, short_header{0x40, 0x11, 0x22, 0x33};
  // Datagram 1: two Initials coalesced, the hello's end first, then its start
  // among PING and PADDING, as Chrome sends; then a short-header packet.
  auto first = quic::protect_client_initial(
      quic::kVersion1, dcid, scid, 0, 1, padded(concat({ping, crypto_frame(b, message, b, message.size()), ping_after_padding}), 400));
  auto second = quic::protect_client_initial(quic::kVersion1, dcid, scid, 1, 2,
                                             padded(concat({pad, crypto_frame(0, message, 0, a)}), 300));
  std::vector<uint8_t> datagram1 = concat({first, second, short_header});
  // Datagram 2: the middle, overlapping what came before by 10 bytes.
  auto datagram2 = quic::protect_client_initial(quic::kVersion1, dcid, scid, 2, 4,
                                                padded(crypto_frame(a - 10, message, a - 10, b + 10), 1100));
  auto packets = quic::parse_datagram(datagram1);
  ASSERT_TRUE(packets) << packets.error();
  EXPECT_EQ(packets->size(), 2u) << "the short-header packet ends the long ones";

  quic::InitialReader r;
  ASSERT_TRUE(r.add(datagram1));
  EXPECT_FALSE(r.hello()) << "a gap remains";
  ASSERT_TRUE(r.add(datagram2));
  ASSERT_TRUE(r.hello()) << r.error();
  EXPECT_EQ(r.initials(), 3u);
  EXPECT_EQ(r.crypto_frames(), 3u);
  auto whole = fingerprint::parse_client_hello(std::span(message).subspan(4)).value();
  EXPECT_EQ(fingerprint::ja4(*r.hello(), 'q').ja4, fingerprint::ja4(whole, 'q').ja4);
  EXPECT_EQ(fingerprint::ja3(*r.hello()).full, fingerprint::ja3(whole).full);
  EXPECT_EQ(r.hello()->sni, "www.facebook.com");
}

TEST(QuicInitial, VersionTwoFlightsReadAsVersionOne) {
  auto message = hello_message("firefox", "vk.com");
  std::vector<uint8_t> dcid{9, 9, 9, 9, 9, 9, 9, 9};
  quic::InitialReader r;
  ASSERT_TRUE(r.add(quic::protect_client_initial(quic::kVersion2, dcid, {}, 0, 2,
                                                 padded(crypto_frame(0, message, 0, message.size()), 1180))));
  ASSERT_TRUE(r.hello()) << r.error();
  EXPECT_EQ(r.version(), quic::kVersion2);
  EXPECT_EQ(r.hello()->sni, "vk.com");
  // A v1 Initial's type bits on a v2 packet are a 0-RTT packet there: not read as an Initial.
  auto v1_typed = quic::protect_client_initial(quic::kVersion1, dcid, {}, 0, 2, padded(std::vector<uint8_t>{0x01}, 1180));
  v1_typed[1] = 0x6b, v1_typed[2] = 0x33, v1_typed[3] = 0x43, v1_typed[4] = 0xcf;
  auto packets = quic::parse_datagram(v1_typed);
  ASSERT_TRUE(packets) << packets.error();
  EXPECT_FALSE(packets->front().initial);
}

TEST(QuicInitial, HostileInputIsRefusedByName) {
  auto rfc = test::read_hex_file(data("rfc9001-client-initial.hex"));
  {
    auto tampered = rfc;
    tampered[700] ^= 1;
    quic::InitialReader r;
    ASSERT_TRUE(r.add(tampered));
    EXPECT_FALSE(r.hello());
    ASSERT_EQ(r.problems().size(), 1u);
    EXPECT_NE(r.problems()[0].find("does not decrypt"), std::string::npos);
  }
  auto expect_error = [](const std::vector<uint8_t>& d, const std::string& says) {
    auto p = quic::parse_datagram(d);
    ASSERT_FALSE(p) << says;
    EXPECT_NE(p.error().find(says), std::string::npos) << p.error();
  };
  expect_error(std::vector<uint8_t>(rfc.begin(), rfc.begin() + 600), "its Length says 1182 bytes, 582 are left");
  auto long_cid = rfc;
  long_cid[5] = 21;
  expect_error(long_cid, "a connection ID of 21 bytes");
  expect_error({0x41, 0x00}, "not a QUIC long-header packet");
  expect_error({0xc0, 0, 0, 0, 1}, "a long header cut short");

  auto frames = quic::crypto_frames(std::vector<uint8_t>{0x00, 0x01, 0x08, 0x00});
  ASSERT_FALSE(frames);
  EXPECT_NE(frames.error().find("type 0x8 is not allowed in an Initial"), std::string::npos);
  frames = quic::crypto_frames(std::vector<uint8_t>{0x06, 0x00, 0x44, 0x00, 0x01});
  ASSERT_FALSE(frames);
  EXPECT_NE(frames.error().find("CRYPTO length 1024 with 1 bytes left"), std::string::npos) << frames.error();

  // CRYPTO data far past any ClientHello: the stream is given up, not grown.
  std::vector<uint8_t> dcid{1, 1, 1, 1, 1, 1, 1, 1};
  std::vector<uint8_t> far{0x06};
  quic::append_varint(far, 1u << 20);
  quic::append_varint(far, 4);
  far.insert(far.end(), {1, 2, 3, 4});
  quic::InitialReader r;
  ASSERT_TRUE(r.add(quic::protect_client_initial(quic::kVersion1, dcid, {}, 0, 1, padded(far, 1180))));
  EXPECT_FALSE(r.hello());
  EXPECT_NE(r.error().find("past 64 KiB"), std::string::npos) << r.error();
}

// tshark (Wireshark 4.0) decrypts QUIC Initials and computes JA3 over their
// ClientHellos; ours must agree on every one it computes.
TEST(QuicPcap, EveryQuicHelloGivesTsharksJa3) {
  test::TempDir dir;
  std::vector<test::UdpFrame> frames;
  frames.push_back({"192.0.2.10:50001", "198.51.100.1:443", test::read_hex_file(data("rfc9001-client-initial.hex"))});
  frames.push_back({"192.0.2.10:50002", "198.51.100.2:443", test::read_hex_file(data("rfc9369-client-initial.hex"))});
  std::vector<std::string> templates{"chrome", "firefox", "minimal12"};
  for (size_t i = 0; i < templates.size(); ++i) {
    auto message = hello_message(templates[i], "www.example.org");
    std::vector<uint8_t> dcid(8, static_cast<uint8_t>(0x20 + i));
    size_t half = message.size() / 2;
    std::string src = "192.0.2.11:" + std::to_string(51000 + i), dst = "198.51.100.9:443";
    frames.push_back({src, dst, quic::protect_client_initial(quic::kVersion1, dcid, {}, 1, 2,
                                                             padded(crypto_frame(half, message, half, message.size()), 1180))});
    frames.push_back({src, dst, quic::protect_client_initial(quic::kVersion1, dcid, {}, 0, 2,
                                                             padded(crypto_frame(0, message, 0, half), 1180))});
  }
  frames.push_back({"192.0.2.12:53", "192.0.2.13:53", {0x12, 0x34, 0x01, 0x00}});  // not QUIC
  auto pcap = dir.file("quic.pcap");
  test::write_udp_pcap(pcap, frames);

  auto ours = test::run_mitmwatch({"pcap", "-r", pcap});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  std::map<std::string, std::string> our_ja3;  // by client endpoint
  for (const auto& r : test::parse_lines(ours.out)) {
    EXPECT_EQ(r["transport"], "quic");
    EXPECT_EQ(r["ja4"].get<std::string>()[0], 'q');
    our_ja3[r["client"].get<std::string>()] = r["ja3_full"].get<std::string>();
  }
  EXPECT_EQ(our_ja3.size(), 5u) << ours.out;

  std::string cmd = "tshark -r " + pcap +
                    " -Y 'tls.handshake.type == 1' -T fields -E separator=/t -e ip.src -e udp.srcport "
                    "-e tls.handshake.ja3_full 2>/dev/null > " + dir.file("tshark.tsv");
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::map<std::string, std::string> theirs;
  std::istringstream in(test::read_file(dir.file("tshark.tsv")));
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string ip, port, full;
    std::getline(fields, ip, '\t');
    std::getline(fields, port, '\t');
    std::getline(fields, full, '\t');
    theirs[ip + ":" + port] = full;
  }
  // Wireshark 4.0 reads v1 (the hellos split over datagrams too) but not the
  // final v2 (0x6b3343cf): every hello it fingerprints must be ours exactly.
  EXPECT_GE(theirs.size(), 4u);
  for (const auto& [client, full] : theirs) EXPECT_EQ(our_ja3[client], full) << client;
  EXPECT_EQ(our_ja3["192.0.2.10:50002"], our_ja3["192.0.2.10:50001"]) << "v2 carries the RFC's same hello";
}
