// The lab end to end, as root: namespaces, routers, servers and the
// interception device, scanned from both vantages. Skipped when not root.
#include "certs/issue.hpp"
#include "certs/x509.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

using namespace mw;

namespace {

// A small lab with its own name, so it never meets a lab someone else runs.
std::string lab_name() { return "t" + std::to_string(getpid() % 100000); }

std::string small_lab_toml(const std::string& name) {
  return "name = \"" + name + R"("
routers = 6
device_after = 4
[[vantages]]
name = "outside"
attach = 1
[[vantages]]
name = "inside"
attach = 5
[[prefixes]]
name = "core"
cidr = "10.70.0.0/24"
servers = 5
untrusted = 1
attach = 6
[[prefixes]]
name = "metro"
cidr = "10.71.0.0/24"
servers = 7
untrusted = 1
attach = 3
[[prefixes]]
name = "edge"
cidr = "10.72.0.0/24"
servers = 6
untrusted = 2
attach = 2
via_device = false
)";
}


class LabTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    dir_ = new test::TempDir();
    name_ = lab_name();
    test::write_file(dir_->file("lab.toml"), small_lab_toml(name_));
    auto r = test::run_mitmwatch({"lab", "up", "--config", dir_->file("lab.toml")}, "", std::chrono::seconds(120));
    up_ok_ = r.exit_code == 0;
    up_log_ = r.err;
    auto s = test::run_mitmwatch({"lab", "status", "--json", "--name", name_});
    if (s.exit_code == 0) status_ = nlohmann::json::parse(s.out);
  }
  static void TearDownTestSuite() {
    if (geteuid() != 0) return;
    test::run_mitmwatch({"lab", "down", "--name", name_});
    delete dir_;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
    ASSERT_TRUE(up_ok_) << up_log_;
  }

  static std::string ca() { return "/run/mitmwatch-lab/" + name_ + "/public-root.pem"; }
  static std::string targets_file() {
    std::string all;
    for (const auto& p : status_["prefixes"])
      for (const auto& s : p["servers"]) all += s["address"].get<std::string>() + "\n";
    test::write_file(dir_->file("targets.txt"), all);
    return dir_->file("targets.txt");
  }
  static test::RunResult in_vantage(const std::string& vantage, std::vector<std::string> cmd) {
    std::vector<std::string> args{"lab", "exec", "--name", name_, vantage, "--"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    return test::run_mitmwatch(args, "", std::chrono::seconds(120));
  }
  static std::vector<nlohmann::json> scan(const std::string& vantage, std::vector<std::string> extra) {
    std::vector<std::string> cmd{MW_BINARY, "scan", "--allow-private", "--quiet", "--ca-file", ca(),
                                 "--handshake-timeout", "20"};
    cmd.insert(cmd.end(), extra.begin(), extra.end());
    auto r = in_vantage(vantage, cmd);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return test::parse_lines(r.out);
  }

  static test::TempDir* dir_;
  static std::string name_;
  static bool up_ok_;
  static std::string up_log_;
  static nlohmann::json status_;
};
test::TempDir* LabTest::dir_ = nullptr;
std::string LabTest::name_;
bool LabTest::up_ok_ = false;
std::string LabTest::up_log_;
nlohmann::json LabTest::status_;

}  // namespace

TEST_F(LabTest, EachVantageFindsExactlyTheTrustedServersBehindTheDevice) {
  for (const std::string vantage : {"outside", "inside"}) {
    std::set<std::string> expected, trusted;
    for (const auto& p : status_["prefixes"])
      for (const auto& s : p["servers"]) {
        std::string target = s["address"].get<std::string>() + ":443";
        if (s["trusted"].get<bool>()) trusted.insert(target);
        if (s["trusted"].get<bool>() && p["behind_device_from"][vantage].get<bool>()) expected.insert(target);
      }
    ASSERT_FALSE(expected.empty());
    // Untrusted servers included on purpose: the device must leave them alone.
    auto records = scan(vantage, {"-i", targets_file(), "--sni", "facebook.com,www.google.com,example.org"});
    std::set<std::string> intercepted;
    for (const auto& r : records) {
      if (r["verdict"] == "intercepted") {
        intercepted.insert(r["target"].get<std::string>());
        EXPECT_NE(r["sni"], "example.org") << "a non-trigger SNI was hijacked: " << r["target"];
      } else {
        EXPECT_EQ(r["verdict"], "clean") << vantage << " " << r["target"] << " " << r["sni"];
      }
    }
    EXPECT_EQ(intercepted, expected) << vantage;
    for (const auto& t : intercepted) EXPECT_TRUE(trusted.count(t)) << "an untrusted server was hijacked: " << t;
  }
}

TEST_F(LabTest, TheForgedLeafFollowsTheRecipe) {
  auto records = scan("outside", {"--sni", "facebook.com", "--retries", "0", "10.70.0.1"});
  ASSERT_EQ(records.size(), 1u);
  ASSERT_EQ(records[0]["verdict"], "intercepted");
  auto cert_of = [](const nlohmann::json& attempt, size_t i) {
    auto der = certs::unbase64(attempt["chain"][i].get<std::string>());
    return std::move(*certs::from_der(*der));
  };
  auto real = cert_of(records[0]["attempts"][0], 0), forged = cert_of(records[0]["attempts"][1], 0);
  auto forged_ca = cert_of(records[0]["attempts"][1], 1);
  // Names copied.
  EXPECT_EQ(certs::subject_text(forged.get()), certs::subject_text(real.get()));
  EXPECT_EQ(certs::dns_names(forged.get()), certs::dns_names(real.get()));
  // Key: RSA-2048, e=3.
  EVP_PKEY* key = X509_get0_pubkey(forged.get());
  EXPECT_EQ(EVP_PKEY_get_base_id(key), EVP_PKEY_RSA);
  EXPECT_EQ(EVP_PKEY_get_bits(key), 2048);
  BIGNUM* e = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(key, "e", &e), 1);
  EXPECT_EQ(BN_get_word(e), 3u);
  BN_free(e);
  // Validity: both ends exactly 6 hours earlier.
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(real.get()), X509_get0_notBefore(forged.get())), 1);
  EXPECT_EQ(days * 86400 + secs, -6 * 3600);
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notAfter(real.get()), X509_get0_notAfter(forged.get())), 1);
  EXPECT_EQ(days * 86400 + secs, -6 * 3600);
  // Serial: the real one above its low 33 bits.
  auto serial_bytes = [](X509* c) {
    const ASN1_INTEGER* s = X509_get0_serialNumber(c);
    return std::vector<unsigned char>(ASN1_STRING_get0_data(s), ASN1_STRING_get0_data(s) + ASN1_STRING_length(s));
  };
  auto rs = serial_bytes(real.get()), fs = serial_bytes(forged.get());
  ASSERT_EQ(rs.size(), fs.size());
  for (size_t i = 0; i + 5 < rs.size(); ++i) EXPECT_EQ(rs[i] & (i == 0 ? 0x7f : 0xff), fs[i]) << "byte " << i;
  EXPECT_EQ(rs[rs.size() - 5] & 0xfe, fs[fs.size() - 5] & 0xfe);
  EXPECT_NE(rs, fs);
  // Extensions: exactly the fixed set.
  std::set<int> nids;
  for (int i = 0; i < X509_get_ext_count(forged.get()); ++i)
    nids.insert(OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(forged.get(), i))));
  EXPECT_EQ(nids, (std::set<int>{NID_subject_key_identifier, NID_authority_key_identifier, NID_basic_constraints,
                                 NID_key_usage, NID_ext_key_usage, NID_subject_alt_name}));
  EXPECT_EQ(X509_get_extended_key_usage(forged.get()), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  // Issuer chain: C=KZ, CN=Security Certificate under C=KZ, CN=Qaznet Trust Network (lab-made).
  EXPECT_EQ(certs::issuer_text(forged.get()), "CN=Security Certificate,C=KZ");
  EXPECT_EQ(certs::issuer_text(forged_ca.get()), "CN=Qaznet Trust Network,C=KZ");
  EXPECT_EQ(EVP_PKEY_get_bits(X509_get0_pubkey(forged_ca.get())), 2048);
  // One key per host: a second connection gets the same forged key.
  auto again = scan("outside", {"--sni", "google.com", "--retries", "0", "10.70.0.1"});
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0]["attempts"][1]["leaf"]["spki_sha256"], records[0]["attempts"][1]["leaf"]["spki_sha256"]);
}

TEST_F(LabTest, TheUpstreamClientHelloIsNotTheClients) {
  scan("outside", {"--sni", "vk.com", "--retries", "0", "10.70.0.2"});
  auto log = test::parse_lines(test::read_file("/run/mitmwatch-lab/" + name_ + "/hellos-core.jsonl"));
  std::string vantage = status_["vantages"][0]["address"].get<std::string>();
  std::set<std::string> upstream_shapes;
  for (const auto& h : log)
    if (h["sni"] == "vk.com" && h["server"] == "10.70.0.2:443") {
      // It comes from the client's own address: only its fingerprint gives it away.
      EXPECT_EQ(h["peer"].get<std::string>().rfind(vantage + ":", 0), 0u) << h;
      upstream_shapes.insert(h["shape"].get<std::string>());
    }
  ASSERT_FALSE(upstream_shapes.empty()) << "the device's upstream connection never reached the server";
  // The scanner's own ClientHello, as servers see it for non-trigger SNIs (its
  // trigger ClientHellos never reach them: the device drops those).
  std::set<std::string> client_shapes;
  for (const auto& h : log) {
    std::string sni = h["sni"].get<std::string>();
    if (sni == "example.org" || (sni.size() > 12 && sni.substr(sni.size() - 12) == ".example.com"))
      client_shapes.insert(h["shape"].get<std::string>());
  }
  ASSERT_FALSE(client_shapes.empty());
  for (const auto& s : upstream_shapes) EXPECT_FALSE(client_shapes.count(s)) << s;
}

TEST_F(LabTest, TtlLimitedClientHelloFindsTheDeviceBetweenHopsFourAndFive) {
  std::string hello = std::string(MW_SHARED_DATA) + "/clienthellos/fb-2019.hex";
  std::string script = std::string(MW_SOURCE_DIR) + "/tests/lab/ttl_probe.py";
  auto probe = [&](int ttl) {
    auto r = in_vantage("outside", {"python3", script, "10.70.0.3", "443", std::to_string(ttl), hello, "1.5"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  // The ClientHello dies at r4: no answer from anyone.
  EXPECT_EQ(probe(4).rfind("silence", 0), 0u);
  // It reaches the device (between r4 and r5): the forged chain comes back.
  std::string answer = probe(5);
  ASSERT_EQ(answer.rfind("answer ", 0), 0u) << answer;
  auto hex_of = [](const std::string& s) { return certs::hex(reinterpret_cast<const unsigned char*>(s.data()), s.size()); };
  EXPECT_NE(answer.find(hex_of("Security Certificate")), std::string::npos);
  EXPECT_EQ(answer.find(hex_of("Lab Public CA")), std::string::npos);
}

// Root only to make namespaces, bind NFQUEUE and open files: the lab's
// servers then run as an unprivileged user with no capability, the device with
// only CAP_NET_ADMIN and CAP_NET_RAW (TCP_REPAIR, IP_TRANSPARENT, verdicts).
TEST_F(LabTest, TheLabsProcessesRunAsAnUnprivilegedUserWithNoMoreThanTheyUse) {
  auto status_of = [](const std::string& ready) {
    auto pid = test::read_file(ready);
    while (!pid.empty() && pid.back() == '\n') pid.pop_back();
    std::map<std::string, std::string> fields;
    std::istringstream in(test::read_file("/proc/" + pid + "/status"));
    for (std::string line; std::getline(in, line);) {
      auto colon = line.find(':');
      if (colon != std::string::npos) fields[line.substr(0, colon)] = line.substr(line.find_first_not_of(" \t", colon + 1));
    }
    return fields;
  };
  std::string run = "/run/mitmwatch-lab/" + name_ + "/run/";
  auto device = status_of(run + "device.ready");
  ASSERT_FALSE(device.empty());
  EXPECT_EQ(device["Uid"].substr(0, 6), "65534\t") << "nobody: " << device["Uid"];
  EXPECT_EQ(device["CapEff"], "0000000000003000") << "net_admin and net_raw only";
  EXPECT_EQ(device["CapBnd"], "0000000000003000");
  EXPECT_EQ(device["NoNewPrivs"], "1");
  for (const auto& p : status_["prefixes"]) {
    auto server = status_of(run + "serve-" + p["name"].get<std::string>() + ".ready");
    ASSERT_FALSE(server.empty()) << p["name"];
    EXPECT_EQ(server["Uid"].substr(0, 6), "65534\t") << server["Uid"];
    EXPECT_EQ(server["CapEff"], "0000000000000000");
    EXPECT_EQ(server["CapPrm"], "0000000000000000");
  }
  // And the lab still intercepts: the other tests of this suite run on it.
}

TEST_F(LabTest, SwitchingTheDeviceOffStopsInterception) {
  auto sw = test::run_mitmwatch({"lab", "device", "off", "--name", name_});
  ASSERT_EQ(sw.exit_code, 0) << sw.err;
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the device reads the switch 4 times a second
  auto off = scan("outside", {"--sni", "facebook.com", "10.70.0.4"});
  ASSERT_EQ(test::run_mitmwatch({"lab", "device", "on", "--name", name_}).exit_code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto on = scan("outside", {"--sni", "facebook.com", "10.70.0.4"});
  ASSERT_EQ(off.size(), 1u);
  ASSERT_EQ(on.size(), 1u);
  EXPECT_EQ(off[0]["verdict"], "clean");
  EXPECT_EQ(on[0]["verdict"], "intercepted");
  // The device writes its counters four times a second: wait for this test's to show.
  nlohmann::json state;
  for (int i = 0; i < 40; ++i) {
    state = nlohmann::json::parse(test::run_mitmwatch({"lab", "status", "--json", "--name", name_}).out)["device"]["state"];
    if (state["hijacked"].get<int>() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GT(state["hijacked"].get<int>(), 0) << state;
  EXPECT_GT(state["passed_because"]["device_off"].get<int>(), 0) << state;
}

TEST(LabLifecycle, UpOverAStaleLabAndDownLeaveNothingBehind) {
  if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  test::TempDir dir;
  std::string name = "u" + std::to_string(getpid() % 100000);
  test::write_file(dir.file("lab.toml"), small_lab_toml(name));
  auto up = [&] { return test::run_mitmwatch({"lab", "up", "--config", dir.file("lab.toml")}, "", std::chrono::seconds(120)); };
  auto first = up();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto second = up();  // on top of the running one: it is removed first
  ASSERT_EQ(second.exit_code, 0) << second.err;
  auto down = test::run_mitmwatch({"lab", "down", "--name", name});
  EXPECT_EQ(down.exit_code, 0) << down.err;
  auto list = test::run_mitmwatch({"lab", "status", "--name", name});
  EXPECT_NE(list.exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists("/run/mitmwatch-lab/" + name));
  FILE* p = popen("ip netns list", "r");
  char buf[4096];
  std::string all;
  while (fgets(buf, sizeof buf, p)) all += buf;
  pclose(p);
  EXPECT_EQ(all.find("mw" + name + "-"), std::string::npos) << all;
}

TEST_F(LabTest, CertsRecipeRecoversEveryPointOfTheLabsRecipe) {
  std::string records;
  for (const auto& r : scan("outside", {"-i", targets_file(), "--sni", "facebook.com,vk.com"})) records += r.dump() + "\n";
  test::write_file(dir_->file("scan.jsonl"), records);
  auto out = test::run_mitmwatch({"certs", "recipe", "--from-scan", dir_->file("scan.jsonl"), "--ca-file", ca(), "--json"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  auto recipes = test::parse_lines(out.out);
  ASSERT_EQ(recipes.size(), 1u) << out.out;  // one interception system
  const auto& r = recipes[0];
  EXPECT_EQ(r["hosts"], 4);  // the trusted core servers
  EXPECT_EQ(r["names_copied"], true);
  EXPECT_EQ(r["key_replaced"], true);
  EXPECT_EQ(r["key_algorithm"], "RSA");
  EXPECT_EQ(r["key_bits"], 2048);
  EXPECT_EQ(r["rsa_exponent"], 3);
  EXPECT_EQ(r["key_per_host"], true);
  EXPECT_EQ(r["validity_shift"], -21600);
  EXPECT_LE(r["serial_low_bits"].get<int>(), 33);
  // The device reuses one forged certificate per host: the max over 4 random 33-bit tails.
  EXPECT_GE(r["serial_low_bits"].get<int>(), 28);
  EXPECT_EQ(r["extension_oids"], nlohmann::json({"2.5.29.14", "2.5.29.35", "2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17"}));
  EXPECT_EQ(r["forged_issuer"], "CN=Security Certificate,C=KZ");
  EXPECT_EQ(r["issuer_chain"][1], "CN=Qaznet Trust Network,C=KZ");
}

// The newcomer's first command: the default lab, the study from both
// vantages, the device located by trace, and nothing left up afterwards.
TEST(LabDemo, RunsTheStudyLocatesTheDeviceAndTakesTheLabDown) {
  if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  if (std::filesystem::exists("/run/mitmwatch-lab/lab"))
    GTEST_SKIP() << "a lab named 'lab' is up; the demo would take it down";
  test::TempDir dir;
  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());  // the demo writes its records here
  auto r = test::run_mitmwatch({"lab", "demo"}, "", std::chrono::seconds(300));
  std::filesystem::current_path(cwd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* s : {"outside", "inside", "Qaznet Trust Network", "injected before the server"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  // The default lab puts the device on r4 -- r5: five hops from outside to
  // the first hop past it; from inside (attached to r5) the first hop past
  // it toward routers 1-4 is r4, the second.
  std::map<std::string, int> expected_hop{{"outside", 5}, {"inside", 2}};
  // The device's counters say why it let a flow by, if a trace finds it did.
  auto counters_at = r.out.find("Device counters:");
  std::string counters = counters_at == std::string::npos
                             ? "(no device counters)"
                             : r.out.substr(counters_at, r.out.find('\n', counters_at) - counters_at);
  for (const auto& [vantage, hop] : expected_hop) {
    auto scans = test::parse_lines(test::read_file(dir.file("mitmwatch-lab-" + vantage + ".jsonl")));
    std::set<std::string> intercepted;
    for (const auto& s : scans)
      if (s["verdict"] == "intercepted") intercepted.insert(s["target"].get<std::string>() + " " + s["sni"].get<std::string>());
    auto traces = test::parse_lines(test::read_file(dir.file("mitmwatch-lab-trace-" + vantage + ".jsonl")));
    EXPECT_EQ(traces.size(), intercepted.size()) << vantage;
    EXPECT_FALSE(traces.empty()) << vantage;
    for (const auto& t : traces) {
      EXPECT_EQ(t["verdict"], "before-server") << vantage << " " << t["target"] << " " << t["reasons"] << "\n" << counters;
      EXPECT_EQ(t["injector_hop"], hop) << vantage << " " << t["target"];
    }
  }
  EXPECT_FALSE(std::filesystem::exists("/run/mitmwatch-lab/lab"));
}

namespace {

// tcpdump in a namespace for the length of a scope (killed however it ends).
class Tcpdump {
 public:
  Tcpdump(const std::string& ns, const std::string& file) : file_(file) {
    pid_ = fork();
    if (pid_ == 0) {
      freopen("/dev/null", "w", stderr);
      // Immediate mode: without it, packets wait in the kernel's ring for a
      // block to fill or time out, and the last ones are lost at SIGINT.
      execlp("ip", "ip", "netns", "exec", ns.c_str(), "tcpdump", "--immediate-mode", "-i", "any", "-U", "-w",
             file.c_str(), "tcp", "port", "443", nullptr);
      _exit(127);
    }
    for (int i = 0; i < 50 && !std::filesystem::exists(file); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  ~Tcpdump() { stop(); }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGINT);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::string file_;
  pid_t pid_ = -1;
};

}  // namespace

// The report's captures, in the lab: from the client's side the forged chain
// (TLS 1.2 sends it in clear) and the break in the server's IP TTL where the
// device took over; from the server's side the device's own ClientHello,
// which the fingerprint registry knows and which is not the client's.
TEST_F(LabTest, CapturesShowTheForgedChainTheTtlBreakAndTheDevicesOwnHello) {
  std::string client_pcap = dir_->file("client.pcap"), server_pcap = dir_->file("server.pcap");
  {
    Tcpdump at_client("mw" + name_ + "-outside", client_pcap), at_server("mw" + name_ + "-score", server_pcap);
    for (const char* sni : {"facebook.com", "example.org"}) {
      auto r = in_vantage("outside", {"sh", "-c",
                                      std::string("echo | timeout 10 openssl s_client -tls1_2 -servername ") + sni +
                                          " -connect 10.70.0.1:443"});
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::string seen;  // every record read, for the failure messages
  auto read = [&seen](const std::string& file) {
    auto r = test::run_mitmwatch({"pcap", "-q", file});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    seen += r.out + r.err;
    std::map<std::string, nlohmann::json> by_sni;  // the connections that sent an SNI
    for (auto& s : test::parse_lines(r.out))
      if (s["sni"].is_string()) by_sni[s["sni"].get<std::string>()] = s;
    return by_sni;
  };
  auto kinds = [](const nlohmann::json& s) {
    std::set<std::string> out;
    for (const auto& f : s["flags"]) out.insert(f["kind"].get<std::string>());
    return out;
  };
  auto client = read(client_pcap);
  ASSERT_TRUE(client.count("facebook.com") && client.count("example.org")) << seen;
  const auto& forged = client["facebook.com"];
  EXPECT_EQ(forged["leaf"]["issuer"], "CN=Security Certificate,C=KZ") << forged;
  EXPECT_TRUE(kinds(forged).count("ttl-break")) << forged["flags"];
  EXPECT_TRUE(kinds(forged).count("forgery-sign")) << forged["flags"];
  const auto& real = client["example.org"];
  EXPECT_EQ(real["leaf"]["issuer"], "CN=Lab Public CA,O=mitmwatch lab,C=ZZ");
  EXPECT_TRUE(kinds(real).empty()) << real["flags"];

  auto server = read(server_pcap);
  ASSERT_TRUE(server.count("facebook.com")) << "the device's upstream connection was not captured";
  const auto& upstream = server["facebook.com"];
  EXPECT_TRUE(kinds(upstream).count("interceptor-fingerprint")) << upstream["flags"];
  // It comes from the client's own address; its fingerprints are not the client's.
  EXPECT_EQ(upstream["client"].get<std::string>().substr(0, 10), forged["client"].get<std::string>().substr(0, 10));
  EXPECT_NE(upstream["ja4"], forged["ja4"]);
  EXPECT_NE(upstream["tlsfp"], forged["tlsfp"]);
  EXPECT_TRUE(kinds(server["example.org"]).empty()) << server["example.org"]["flags"];
}

// The report's experiment with "a server we controlled": mitmwatch fpserver
// behind the device. A non-trigger request reaches it from the client itself;
// a trigger request reaches it from the device, under the client's address,
// with the device's ClientHello: flagged, and shown to the client as it is.
TEST_F(LabTest, FpserverBehindTheDeviceFlagsTheReoriginatedHello) {
  std::string state = "/run/mitmwatch-lab/" + name_;
  // A certificate the device trusts (the lab's public CA) for both names.
  auto cert = certs::read_pem_file(state + "/public-ca.pem");
  auto key = certs::read_key_pem_file(state + "/public-ca.key");
  ASSERT_TRUE(cert && key);
  certs::Authority ca{std::move(cert->front()), std::move(*key)};
  auto served = certs::make_leaf(ca, {"facebook.com", "example.org"}, {&ca});
  test::write_pem(dir_->file("fp-chain.pem"), {served.leaf.get(), ca.cert.get()});
  test::write_file(dir_->file("fp-key.pem"), certs::key_to_pem(served.key.get()));
  std::string vantage = status_["vantages"][0]["address"].get<std::string>();
  // 10.70.0.200 is in the core prefix (behind the device from outside) but no lab server's.
  auto run_server = [&](const std::string& log, const std::vector<std::string>& extra) {
    std::vector<std::string> args{"ip", "netns", "exec", "mw" + name_ + "-score", MW_BINARY, "fpserver", "-q",
                                  "--listen", "10.70.0.200:443", "--cert", dir_->file("fp-chain.pem"), "--key",
                                  dir_->file("fp-key.pem"), "-o", log};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("ip", argv.data());
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return pid;
  };
  auto stop_server = [](pid_t pid) {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
  };
  auto curl = [&](const std::string& sni) {
    return in_vantage("outside", {"curl", "-sk", "--max-time", "10", "-A", "mw-probe/1", "--resolve",
                                  sni + ":443:10.70.0.200", "https://" + sni + "/json"});
  };
  // Learn what the client sends, from a request the device lets through.
  pid_t learn = run_server(dir_->file("learn.jsonl"), {});
  auto direct = curl("example.org");
  stop_server(learn);
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  auto client = nlohmann::json::parse(direct.out);
  ASSERT_TRUE(client["ja4"].is_string()) << direct.out;
  EXPECT_EQ(client["client"].get<std::string>().rfind(vantage + ":", 0), 0u);
  test::write_file(dir_->file("expect.json"), R"({"sources": [{"cidr": ")" + vantage + R"(/32", "name": "outside probe", "ja4": [")" +
                                                  client["ja4"].get<std::string>() + R"("]}]})");
  // Now with the expectation, and the trigger name.
  pid_t watch = run_server(dir_->file("watch.jsonl"), {"--expect", dir_->file("expect.json")});
  auto intercepted = curl("facebook.com");
  auto again = curl("example.org");
  stop_server(watch);
  ASSERT_EQ(intercepted.exit_code, 0) << intercepted.err;
  auto seen = nlohmann::json::parse(intercepted.out);  // relayed by the device: what the server saw
  EXPECT_EQ(seen["client"].get<std::string>().rfind(vantage + ":", 0), 0u) << "the device spoofs the client's address";
  EXPECT_NE(seen["ja4"], client["ja4"]);
  std::set<std::string> kinds;
  for (const auto& f : seen["flags"]) kinds.insert(f["kind"].get<std::string>());
  EXPECT_TRUE(kinds.count("fingerprint-mismatch")) << seen["flags"];
  EXPECT_TRUE(kinds.count("interceptor-fingerprint")) << seen["flags"];
  EXPECT_TRUE(nlohmann::json::parse(again.out)["flags"].empty()) << again.out;
  // The log holds the same verdicts.
  size_t flagged = 0;
  for (const auto& r : test::parse_lines(test::read_file(dir_->file("watch.jsonl"))))
    if (r["sni"] == "facebook.com" && !r["flags"].empty()) ++flagged;
  EXPECT_GE(flagged, 1u);
}
