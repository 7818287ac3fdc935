// Fingerprints against their references, on the references' own data:
// the JA4 project's captures with its expected JA4/JA4S values, tshark's
// JA3/JA3S on the same files, and the 2019 study's ClientHellos. Then the
// parsers' and the reassembly's behaviour on split, reordered and lying input.
#include "drivers/pcap_read.hpp"
#include "fingerprint/fingerprint_registry.hpp"
#include "fingerprint/fingerprints.hpp"
#include "fingerprint/handshake_stream.hpp"
#include "pcap/tcp_stream.hpp"
#include "records/tls_session_record.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

using namespace mw;
namespace fp = mw::fingerprint;

namespace {

const std::string kPcaps = std::string(MW_SHARED_DATA) + "/pcaps/";
const std::string kHellos = std::string(MW_SHARED_DATA) + "/clienthellos/";

fp::ClientHello hello_of(const std::vector<uint8_t>& records) {
  fp::HandshakeStream s;
  s.feed(records);
  auto m = s.next();
  EXPECT_TRUE(m) << fp::to_string(s.state()) << " " << s.reason();
  if (!m) return {};
  EXPECT_EQ(m->type, fp::handshake_type::kClientHello);
  auto h = fp::parse_client_hello(m->body, m->record_version);
  EXPECT_TRUE(h) << h.error();
  return h ? *h : fp::ClientHello{};
}

// Every TLS connection of a capture, keyed by the client's "address port".
std::map<std::string, pcap::TlsSession> sessions_of(const std::string& file) {
  std::map<std::string, pcap::TlsSession> out;
  drivers::PcapReadHooks hooks;
  hooks.on_session = [&](pcap::TlsSession&& s) {
    out[s.client.ip.to_string() + " " + std::to_string(s.client.port)] = std::move(s);
  };
  auto stats = drivers::read_pcap(file, hooks);
  EXPECT_TRUE(stats) << stats.error();
  if (stats) {
    EXPECT_EQ(stats->error, "") << file;
  }
  return out;
}

const std::vector<std::string> kCaptures = {"browsers-x509.pcapng", "ipv6.pcapng", "latest.pcapng",
                                            "socks-https-example.pcap", "tls-alpn-h2.pcap", "tls12.pcap"};

}  // namespace

// ---- the references' own data ----

TEST(Fingerprint, Ja4AndJa4sEqualTheJa4ProjectsOnItsCaptures) {
  size_t checked = 0;
  for (const auto& name : kCaptures) {
    auto expected = nlohmann::json::parse(test::read_file(kPcaps + name + ".ja4.json"));
    auto got = sessions_of(kPcaps + name);
    for (const auto& e : expected) {
      if (!e.contains("JA4.1") || e["JA4.1"].get<std::string>()[0] != 't') continue;  // QUIC and non-TLS entries
      std::string key = e["src"].get<std::string>() + " " + e["srcport"].get<std::string>();
      ASSERT_TRUE(got.count(key)) << name << ": no TLS connection from " << key;
      const auto& s = got.at(key);
      ASSERT_TRUE(s.client_hello) << name << " " << key;
      auto j = fp::ja4(*s.client_hello);
      EXPECT_EQ(j.ja4, e["JA4.1"]) << name << " " << key;
      EXPECT_EQ(j.ja4_r, e["JA4_r.1"]) << name << " " << key;
      EXPECT_EQ(j.ja4_o, e["JA4_o.1"]) << name << " " << key;
      EXPECT_EQ(j.ja4_ro, e["JA4_ro.1"]) << name << " " << key;
      if (e.contains("domain")) {
        EXPECT_EQ(s.client_hello->sni.value_or(""), e["domain"]) << name << " " << key;
      }
      ++checked;
      if (!e.contains("JA4S")) continue;
      ASSERT_TRUE(s.server_hello) << name << " " << key;
      auto js = fp::ja4s(*s.server_hello);
      EXPECT_EQ(js.ja4s, e["JA4S"]) << name << " " << key;
      EXPECT_EQ(js.ja4s_r, e["JA4S_r"]) << name << " " << key;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 24u);  // 14 ClientHellos and 10 ServerHellos listed by the JA4 project
}

TEST(Fingerprint, Ja3AndJa3sEqualTsharksOnTheSameCaptures) {
  // tshark's rows name tcp.stream; the JA4 project's files (made with tshark)
  // name the client address and port of each stream.
  std::map<std::string, std::string> client_of;  // "file stream" -> "address port"
  for (const auto& name : kCaptures)
    for (const auto& e : nlohmann::json::parse(test::read_file(kPcaps + name + ".ja4.json")))
      client_of[name + " " + std::to_string(e["stream"].get<int>())] =
          e["src"].get<std::string>() + " " + e["srcport"].get<std::string>();
  std::map<std::string, std::map<std::string, pcap::TlsSession>> by_file;
  for (const auto& name : kCaptures) by_file[name] = sessions_of(kPcaps + name);
  size_t hellos = 0, server_hellos = 0;
  auto rows = test::read_lines(kPcaps + "ja3-ja3s-by-tshark.tsv");
  for (size_t i = 1; i < rows.size(); ++i) {
    std::vector<std::string> f;
    std::stringstream line(rows[i]);
    for (std::string cell; std::getline(line, cell, '\t');) f.push_back(cell);
    f.resize(9);
    const std::string& file = f[0];
    std::string key = file + " " + f[2];
    ASSERT_TRUE(client_of.count(key)) << key;
    const auto& s = by_file[file].at(client_of[key]);
    std::string types = f[3];
    if (types.rfind("1", 0) == 0) {
      ASSERT_TRUE(s.client_hello) << key;
      auto j = fp::ja3(*s.client_hello);
      EXPECT_EQ(j.hash, f[5]) << key;
      EXPECT_EQ(j.full, f[6]) << key;
      ++hellos;
    } else if (types.rfind("2", 0) == 0) {
      ASSERT_TRUE(s.server_hello) << key;
      auto j = fp::ja3s(*s.server_hello);
      EXPECT_EQ(j.hash, f[7]) << key;
      EXPECT_EQ(j.full, f[8]) << key;
      ++server_hellos;
    }
  }
  EXPECT_EQ(hellos, 14u);
  EXPECT_EQ(server_hellos, 13u);
}

TEST(Fingerprint, The2019StudysClientHellos) {
  auto fb = hello_of(test::read_hex_file(kHellos + "fb-2019.hex"));
  auto norm = hello_of(test::read_hex_file(kHellos + "norm-2019.hex"));
  EXPECT_EQ(fb.sni.value_or(""), "www.facebook.com");
  EXPECT_FALSE(norm.sni);
  EXPECT_EQ(fb.record_version, 0x0301);
  EXPECT_EQ(fb.version, 0x0303);
  // JA3 as tshark 4.0.17 computes it on these records (wrapped in TCP by text2pcap).
  EXPECT_EQ(fp::ja3(fb).hash, "63c4972da11f7a873178a9ee53acfd9e");
  EXPECT_EQ(fp::ja3(norm).hash, "1949310ab64717817ba98300d889efb3");
  // One client: the same cipher and extension hashes; only the SNI differs.
  EXPECT_EQ(fp::ja4(fb).ja4, "t12d850600_972b7b87df62_a1e935682795");
  EXPECT_EQ(fp::ja4(norm).ja4, "t12i850500_972b7b87df62_a1e935682795");
  // tlsfingerprint.io ids: SNI is in the extension list, so they differ.
  EXPECT_EQ(fp::tlsfp(fb), "eca6c12477e87158");
  EXPECT_EQ(fp::tlsfp(norm), "9bc1bf0fe5878e3c");
}

TEST(Fingerprint, GoldenRecordsOfTheSharedCaptures) {
  // The whole mitmwatch.pcap/1 record of every TLS connection of the shared
  // captures. Regenerate on purpose only: UPDATE_GOLDEN=1, then review the diff.
  const std::string golden = std::string(MW_SOURCE_DIR) + "/tests/golden/pcap-sessions.jsonl";
  auto interceptors = certs::InterceptorRegistry::builtin();
  auto fingerprints = fp::FingerprintRegistry::builtin();
  std::string got;
  for (const auto& name : kCaptures) {
    records::SessionContext ctx{name, &interceptors, &fingerprints, /*raw=*/true};
    std::map<uint64_t, std::string> lines;
    drivers::PcapReadHooks hooks;
    hooks.on_session = [&](pcap::TlsSession&& s) { lines[s.stream] = records::to_json(s, ctx).dump(); };
    ASSERT_TRUE(drivers::read_pcap(kPcaps + name, hooks));
    for (const auto& [stream, line] : lines) got += line + "\n";
  }
  if (std::getenv("UPDATE_GOLDEN")) test::write_file(golden, got);
  EXPECT_EQ(got, test::read_file(golden)) << "regenerate with UPDATE_GOLDEN=1 and review the diff";
}

// ---- behaviour ----

TEST(HandshakeStream, AClientHelloSplitOverRecordsAndBytesGivesTheSameFingerprints) {
  auto records = test::read_hex_file(kHellos + "fb-2019.hex");
  auto whole = hello_of(records);
  // Re-record the handshake message in 7-byte records.
  std::vector<uint8_t> message(records.begin() + 5, records.end());
  std::vector<uint8_t> split;
  for (size_t i = 0; i < message.size(); i += 7) {
    size_t n = std::min<size_t>(7, message.size() - i);
    split.insert(split.end(), {0x16, 0x03, 0x01, 0x00, static_cast<uint8_t>(n)});
    split.insert(split.end(), message.begin() + static_cast<long>(i), message.begin() + static_cast<long>(i + n));
  }
  fp::HandshakeStream s;
  for (uint8_t b : split) s.feed({&b, 1});  // one byte per TCP segment
  auto m = s.next();
  ASSERT_TRUE(m) << s.reason();
  auto h = fp::parse_client_hello(m->body, m->record_version);
  ASSERT_TRUE(h);
  EXPECT_EQ(fp::ja3(*h).full, fp::ja3(whole).full);
  EXPECT_EQ(fp::ja4(*h).ja4_ro, fp::ja4(whole).ja4_ro);
  EXPECT_EQ(fp::tlsfp(*h), fp::tlsfp(whole));
}

TEST(HandshakeStream, TlsAfterAProxyPreambleIsFoundAndJunkIsNot) {
  auto records = test::read_hex_file(kHellos + "norm-2019.hex");
  std::vector<uint8_t> socks = {0x05, 0x01, 0x00, 0x05, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0x01, 0xbb};
  socks.insert(socks.end(), records.begin(), records.end());
  fp::HandshakeStream s;
  s.feed(socks);
  ASSERT_TRUE(s.next()) << s.reason();
  EXPECT_EQ(s.preamble(), 13u);

  fp::HandshakeStream http;
  std::string get(20000, 'x');
  http.feed({reinterpret_cast<const uint8_t*>(get.data()), get.size()});
  EXPECT_EQ(http.state(), fp::HandshakeStream::State::not_tls);
  EXPECT_FALSE(http.next());
}

TEST(HandshakeStream, LyingLengthsEndTheStreamWithAReason) {
  auto records = test::read_hex_file(kHellos + "fb-2019.hex");
  auto record_too_long = records;
  record_too_long[3] = 0xff;  // record length 65k+
  fp::HandshakeStream a;
  a.feed(record_too_long);
  EXPECT_EQ(a.state(), fp::HandshakeStream::State::malformed);
  EXPECT_NE(a.reason().find("record length"), std::string::npos);

  fp::HandshakeStream b(1024);
  auto message_too_long = records;
  message_too_long[6] = 0x01;  // handshake length 0x01xxxx, over the 1 KiB cap
  b.feed(message_too_long);
  EXPECT_EQ(b.state(), fp::HandshakeStream::State::malformed);

  // A ClientHello whose cipher list claims more than the message holds.
  fp::HandshakeStream c;
  c.feed(records);
  auto m = c.next();
  ASSERT_TRUE(m);
  auto body = m->body;
  body[2 + 32 + 1] = 0xff;  // cipher_suites length high byte
  auto h = fp::parse_client_hello(body);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().find("cipher_suites"), std::string::npos);
  // Every truncation fails cleanly.
  for (size_t n = 0; n < m->body.size(); ++n) (void)fp::parse_client_hello({m->body.data(), n});
}

TEST(HandshakeStream, EncryptedAndAlertEndTheReading) {
  fp::HandshakeStream s;
  std::vector<uint8_t> server = {0x16, 0x03, 0x03, 0x00, 0x04, 0x0e, 0x00, 0x00, 0x00,  // ServerHelloDone
                                 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};             // alert: handshake_failure
  s.feed(server);
  auto m = s.next();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type, fp::handshake_type::kServerHelloDone);
  EXPECT_EQ(s.state(), fp::HandshakeStream::State::alert);
  ASSERT_TRUE(s.alert());
  EXPECT_EQ(s.alert()->second, 40);
}

TEST(Grease, Rfc8701ValuesOnly) {
  int n = 0;
  for (uint32_t v = 0; v < 0x10000; ++v) n += fp::is_grease(static_cast<uint16_t>(v));
  EXPECT_EQ(n, 16);
  EXPECT_TRUE(fp::is_grease(0x0a0a));
  EXPECT_TRUE(fp::is_grease(0xfafa));
  EXPECT_FALSE(fp::is_grease(0x0a1a));
}

TEST(TcpStream, OutOfOrderRetransmittedAndOverlappingSegmentsComeOutOnce) {
  std::string data = "0123456789abcdefghijklmnopqrstuvwxyz";
  auto seg = [&](size_t from, size_t to) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()) + from, to - from);
  };
  for (uint32_t isn : {1000u, 0xffffffeeu}) {  // the second wraps mid-stream
    pcap::TcpStream t;
    std::string out;
    auto sink = [&](std::span<const uint8_t> b) { out.append(b.begin(), b.end()); };
    t.on_syn(isn);
    uint32_t base = isn + 1;
    t.on_data(base + 20, seg(20, 36), sink);  // early
    t.on_data(base + 10, seg(10, 25), sink);  // early, overlapping the first
    EXPECT_EQ(out, "");
    EXPECT_TRUE(t.has_gap());
    t.on_data(base, seg(0, 12), sink);  // fills the gap, overlapping
    t.on_data(base, seg(0, 12), sink);  // a retransmission
    t.on_data(base + 30, seg(30, 36), sink);
    EXPECT_EQ(out, data) << std::hex << isn;
    EXPECT_EQ(t.delivered(), data.size());
    EXPECT_FALSE(t.has_gap());
  }
}

TEST(TcpStream, TheOutOfOrderStoreIsBounded) {
  pcap::TcpStream t;
  std::vector<uint8_t> chunk(4096, 'x');
  auto sink = [](std::span<const uint8_t>) {};
  t.on_syn(0);
  for (uint32_t i = 1; i < 1000; ++i) t.on_data(1 + i * 4096, chunk, sink);  // never the first
  EXPECT_GT(t.dropped(), 0u);
}

TEST(FingerprintRegistry, BuiltinLoadsAndBadEntriesAreNamed) {
  auto r = fp::FingerprintRegistry::builtin();
  ASSERT_FALSE(r.entries().empty());
  auto hit = r.match("", "", "f09427b5aaf9304b");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->field, "tlsfp");
  EXPECT_FALSE(r.match("x", "y", "z"));
  auto bad = fp::FingerprintRegistry::from_json(R"({"fingerprints":[{"name":"a"}]})", "f.json");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("f.json"), std::string::npos);
  EXPECT_FALSE(fp::FingerprintRegistry::from_json("[", "g.json"));
}
