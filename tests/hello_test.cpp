// The ClientHello engine and the raw probe: templates fingerprint like the
// captures they came from, mutations parse back with the project's own
// parser, and a raw cert-grab probe judges real servers on 127.0.0.0/8 as
// the OpenSSL scan does.
#include "drivers/scan.hpp"
#include "fingerprint/fingerprints.hpp"
#include "fingerprint/handshake_stream.hpp"
#include "hello/client_hello.hpp"
#include "hello/raw_probe.hpp"
#include "lab/stand_in.hpp"
#include "lab/tls_server.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <sstream>

using namespace mw;
namespace fp = mw::fingerprint;

namespace {

const std::string kPcaps = std::string(MW_SHARED_DATA) + "/pcaps/";

fp::ClientHello parse_wire(const std::vector<uint8_t>& wire) {
  fp::HandshakeStream s;
  s.feed(wire);
  auto m = s.next();
  EXPECT_TRUE(m) << s.reason();
  if (!m) return {};
  auto h = fp::parse_client_hello(m->body, m->record_version);
  EXPECT_TRUE(h) << h.error();
  return h ? *h : fp::ClientHello{};
}

std::vector<uint8_t> build(const hello::Template& t, const hello::HelloSpec& spec) {
  uint8_t random[64];
  for (int i = 0; i < 64; ++i) random[i] = static_cast<uint8_t>(i * 7);
  return hello::to_wire(hello::build_handshake(t.hello, spec, random), t.hello.record_version, spec).bytes;
}

hello::HelloSpec with_names(std::vector<std::string> names) {
  hello::HelloSpec s;
  s.server_names = std::move(names);
  return s;
}

// tshark's JA3 (full string) and the JA4 project's JA4 of one capture's ClientHello.
struct Reference {
  std::string ja3_full, ja4;
};
Reference reference(const std::string& pcap, const std::string& frame) {
  Reference r;
  for (const auto& row : test::read_lines(kPcaps + "ja3-ja3s-by-tshark.tsv")) {
    std::vector<std::string> f;
    std::stringstream line(row);
    for (std::string cell; std::getline(line, cell, '\t');) f.push_back(cell);
    if (f.size() > 6 && f[0] == pcap && f[1] == frame) r.ja3_full = f[6];
  }
  for (const auto& e : nlohmann::json::parse(test::read_file(kPcaps + pcap + ".ja4.json")))
    if (e.value("stream", -1) == 0 && e.contains("JA4.1")) r.ja4 = e["JA4.1"].get<std::string>();
  return r;
}

}  // namespace

TEST(HelloTemplates, EveryBuiltInTemplateRebuildsToItsOwnFingerprints) {
  ASSERT_EQ(hello::builtin_templates().size(), 4u);
  for (const auto& t : hello::builtin_templates()) {
    auto spec = with_names({t.hello.sni.value_or("")});
    spec.send_sni = t.hello.sni.has_value();
    auto again = parse_wire(build(t, spec));
    EXPECT_EQ(fp::ja3(again).full, fp::ja3(t.hello).full) << t.name;
    auto a = fp::ja4(again), b = fp::ja4(t.hello);
    EXPECT_EQ(a.ja4, b.ja4) << t.name;
    EXPECT_EQ(a.ja4_ro, b.ja4_ro) << t.name;
    EXPECT_EQ(fp::tlsfp(again), fp::tlsfp(t.hello)) << t.name;
    EXPECT_EQ(again.extensions.size(), t.hello.extensions.size()) << t.name;
  }
}

TEST(HelloTemplates, BrowserTemplatesFingerprintLikeTheirCaptures) {
  struct Case {
    const char* name;
    const char* pcap;
    const char* frame;
  };
  for (const auto& c : {Case{"chrome", "browsers-x509.pcapng", "4"}, Case{"firefox", "tls12.pcap", "1"}}) {
    auto t = hello::find_template(c.name);
    ASSERT_TRUE(t) << t.error();
    auto ref = reference(c.pcap, c.frame);
    ASSERT_FALSE(ref.ja3_full.empty()) << c.pcap;
    ASSERT_FALSE(ref.ja4.empty()) << c.pcap;
    // Another name than the capture's: JA3 and JA4 do not depend on it.
    auto sent = parse_wire(build(*t, with_names({"facebook.com"})));
    EXPECT_EQ(fp::ja3(sent).full, ref.ja3_full) << c.name;
    EXPECT_EQ(fp::ja4(sent).ja4, ref.ja4) << c.name;
    EXPECT_EQ(sent.sni, "facebook.com");
  }
}

TEST(HelloTemplates, TheFb2019TemplateIsTheStudysHello) {
  auto original = test::read_hex_file(std::string(MW_SHARED_DATA) + "/clienthellos/fb-2019.hex");
  auto t = hello::find_template("fb2019");
  ASSERT_TRUE(t);
  auto spec = with_names({"www.facebook.com"});
  auto rebuilt = build(*t, spec);
  ASSERT_EQ(rebuilt.size(), original.size());
  // Equal but for the random (11..43) and session id, which every hello draws anew.
  size_t sid = original[43];
  for (size_t i = 0; i < original.size(); ++i) {
    if (i < 11 || i >= 44 + sid) {
      EXPECT_EQ(rebuilt[i], original[i]) << "byte " << i;
    }
  }
}

TEST(HelloTemplates, OpenSslTemplateIsTheScansOwnHello) {
  auto profile = tls::ClientProfile::browser_like();
  ASSERT_TRUE(profile);
  auto t = hello::template_from_context(profile->get(), "openssl");
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->hello.sni, "example.com");
  EXPECT_EQ(t->hello.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_FALSE(t->hello.supported_versions.empty());
}

TEST(HelloTemplates, BadTemplateFilesNameTheProblem) {
  EXPECT_NE(hello::parse_templates("[]", "t.json").error().find("t.json"), std::string::npos);
  auto odd = hello::parse_templates(R"({"templates":[{"name":"x","hex":"16030"}]})", "t.json");
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().find("templates[0].hex"), std::string::npos);
  auto short_hello = hello::parse_templates(R"({"templates":[{"name":"x","hex":"160301000401000000"}]})", "t.json");
  ASSERT_FALSE(short_hello);
  EXPECT_NE(short_hello.error().find("ClientHello"), std::string::npos) << short_hello.error();
  EXPECT_FALSE(hello::find_template("netscape"));
  EXPECT_NE(hello::find_template("netscape").error().find("chrome"), std::string::npos);
}

TEST(HelloMutations, ServerNameEntriesAsAsked) {
  auto t = *hello::find_template("chrome");
  auto two = parse_wire(build(t, with_names({"facebook.com", "qz.example.com"})));
  EXPECT_EQ(two.server_names, (std::vector<std::string>{"facebook.com", "qz.example.com"}));
  auto empty = parse_wire(build(t, with_names({""})));
  EXPECT_EQ(empty.server_names, (std::vector<std::string>{""}));
  auto spec = with_names({});
  spec.send_sni = false;
  auto none = parse_wire(build(t, spec));
  EXPECT_FALSE(none.sni);
  for (const auto& x : none.extensions) EXPECT_NE(x.type, fp::ext::kServerName);
  // A template without server_name gets one, first.
  auto minimal = *hello::find_template("minimal12");
  auto no_sni_tpl = minimal;
  std::erase_if(no_sni_tpl.hello.extensions, [](const fp::Extension& x) { return x.type == fp::ext::kServerName; });
  auto added = parse_wire(build(no_sni_tpl, with_names({"vk.com"})));
  ASSERT_FALSE(added.extensions.empty());
  EXPECT_EQ(added.extensions.front().type, fp::ext::kServerName);
  EXPECT_EQ(added.sni, "vk.com");
}

TEST(HelloMutations, PaddingKeepsOrGrowsTheLength) {
  auto chrome = *hello::find_template("chrome");
  // Chrome pads to a fixed size: a longer name takes from the padding.
  auto a = build(chrome, with_names({"a.example"}));
  auto b = build(chrome, with_names({"a-much-longer-name-than-before.example"}));
  EXPECT_EQ(a.size(), b.size());
  auto spec = with_names({"vk.com"});
  spec.pad_to = 1024;
  auto minimal = *hello::find_template("minimal12");
  auto padded = build(minimal, spec);
  EXPECT_EQ(padded.size(), 5u + 1024u);
  auto h = parse_wire(padded);
  EXPECT_EQ(h.extensions.back().type, 0x0015);
}

TEST(HelloMutations, Tls12OnlyDropsSupportedVersions) {
  auto spec = with_names({"vk.com"});
  spec.tls12_only = true;
  auto h = parse_wire(build(*hello::find_template("chrome"), spec));
  EXPECT_TRUE(h.supported_versions.empty());
  EXPECT_EQ(fp::ja4(h).ja4.substr(0, 3), "t12");
}

TEST(HelloMutations, RecordsAndSegmentsSplitWhereAsked) {
  auto t = *hello::find_template("firefox");
  auto spec = with_names({"facebook.com"});
  spec.record_splits = {6, 100};
  spec.segment_splits = {11, 3000, 0};
  uint8_t random[64] = {};
  auto message = hello::build_handshake(t.hello, spec, random);
  auto wire = hello::to_wire(message, t.hello.record_version, spec);
  // Three records: 6, 94 and the rest of the message.
  EXPECT_EQ(wire.bytes.size(), message.size() + 3 * 5);
  EXPECT_EQ(wire.bytes[0], 22);
  EXPECT_EQ((wire.bytes[3] << 8 | wire.bytes[4]), 6);
  EXPECT_EQ(wire.bytes[5 + 6], 22);
  EXPECT_EQ((wire.bytes[5 + 6 + 3] << 8 | wire.bytes[5 + 6 + 4]), 94);
  EXPECT_EQ(wire.segments, (std::vector<size_t>{0, 11}));  // 0 and past-the-end cuts dropped
  EXPECT_EQ(parse_wire(wire.bytes).sni, "facebook.com");   // the parser joins the records
  spec.bytewise = true;
  EXPECT_EQ(hello::to_wire(message, t.hello.record_version, spec).segments.size(), message.size() + 15);
}

// ---- the raw probe against real servers ----

class RawProbeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new lab::StandInWorld(); }
  static void TearDownTestSuite() { delete world_; }

  std::vector<records::ScanRecord> scan(std::vector<std::shared_ptr<lab::Site>> sites, hello::HelloSpec extra = {},
                                        std::vector<std::string> snis = {"facebook.com"}) {
    std::vector<lab::Listener> listeners;
    for (size_t i = 0; i < sites.size(); ++i)
      listeners.push_back({{*net::IpAddress::parse("127.90.0." + std::to_string(i + 1)), 0}, sites[i]});
    auto server = lab::TlsServer::start(std::move(listeners), {});
    EXPECT_TRUE(server) << server.error();
    std::vector<net::TargetSpec> specs;
    for (const auto& e : (*server)->endpoints()) specs.push_back({{e.ip, e.ip.bits()}, e.port, e.to_string()});
    net::TargetFilter filter;
    filter.allow_reserved = true;
    net::TargetStream stream(specs, filter);
    auto trust = tls::TrustStore::empty();
    trust.add(world_->public_root().cert.get());
    auto registry = certs::InterceptorRegistry::builtin();
    auto profile = tls::ClientProfile::browser_like();
    drivers::ScanOptions o;
    o.test_snis = snis;
    o.control_sni = "qzvtrmplkxwa.example.com";
    o.retries = 1;
    o.connect_timeout = std::chrono::milliseconds(2000);
    o.handshake_timeout = std::chrono::milliseconds(1500);
    auto tpl = *hello::find_template("chrome");
    hello::ProbeCache names;
    std::vector<records::ScanRecord> out;
    drivers::ScanHooks hooks;
    hooks.on_record = [&](records::ScanRecord&& r) { out.push_back(std::move(r)); };
    hooks.make_probe = [&](const net::Endpoint& target, std::optional<size_t>, const std::string& sni) {
      hello::HelloSpec spec = extra;
      spec.tls12_only = true;
      spec.server_names = {sni};
      uint8_t random[64] = {};
      auto wire = hello::to_wire(hello::build_handshake(tpl.hello, spec, random), 0x0301, spec);
      return std::make_unique<hello::RawHelloProbe>(target, std::move(wire), sni, std::nullopt, names);
    };
    drivers::Scanner scanner(o, *profile, trust, registry);
    scanner.run(stream, hooks);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.target.to_string() < b.target.to_string(); });
    return out;
  }

  static lab::StandInWorld* world_;
};
lab::StandInWorld* RawProbeTest::world_ = nullptr;

TEST_F(RawProbeTest, CertGrabJudgesServersAsTheOpenSslScanDoes) {
  auto records = scan({world_->clean_site("a.example"), world_->intercepted_site("b.example"),
                       world_->blocking_site("c.example", lab::SniAction::reset),
                       world_->blocking_site("d.example", lab::SniAction::alert)});
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0].result.verdict, verdict::Verdict::clean);
  EXPECT_EQ(records[1].result.verdict, verdict::Verdict::intercepted);
  EXPECT_EQ(records[2].result.verdict, verdict::Verdict::blocked);
  EXPECT_EQ(records[3].result.verdict, verdict::Verdict::blocked);
  const auto& control = records[0].attempts.front().observation;
  EXPECT_EQ(control.tls_version, "TLSv1.2");
  EXPECT_FALSE(control.cipher.empty());
  EXPECT_TRUE(control.trust.trusted);
  EXPECT_EQ(records[3].attempts[1].observation.alert, 112) << tls::error_name(records[3].attempts[1].observation) << " " << records[3].attempts[1].observation.error_detail;  // unrecognized_name, as sent
}

TEST_F(RawProbeTest, SplitHellosStillReachTheServer) {
  hello::HelloSpec split;
  split.record_splits = {6};
  split.segment_splits = {3, 11, 40};
  auto records = scan({world_->intercepted_site("b.example")}, split);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].result.verdict, verdict::Verdict::intercepted);
  hello::HelloSpec bytewise;
  bytewise.bytewise = true;
  records = scan({world_->clean_site("a.example")}, bytewise);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].result.verdict, verdict::Verdict::clean);
}

TEST_F(RawProbeTest, HostileServersCostOneResultEach) {
  auto garbage = world_->clean_site("g.example");
  garbage->misbehaviour = lab::Misbehaviour::garbage;
  auto stall = world_->clean_site("s.example");
  stall->misbehaviour = lab::Misbehaviour::stall;
  auto drip = world_->clean_site("d.example");
  drip->misbehaviour = lab::Misbehaviour::drip;
  auto records = scan({garbage, stall, drip, world_->clean_site("a.example")});
  ASSERT_EQ(records.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(records[i].result.verdict, verdict::Verdict::unreachable) << i;
    EXPECT_FALSE(records[i].attempts.front().observation.ok()) << i;
  }
  EXPECT_EQ(records[3].result.verdict, verdict::Verdict::clean);
}
