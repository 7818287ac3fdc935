// RIPE Atlas sslcert: a real published result parsed; results in Atlas's
// format made from real chains of real loopback servers (one probe behind a
// stand-in interceptor, one not) judged, stored a probe a vantage, compared;
// definitions written for the API.
#include "certs/x509.hpp"
#include "drivers/atlas.hpp"
#include "lab/stand_in.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <set>

using namespace mw;

namespace {

const std::string kFixture = std::string(MW_SOURCE_DIR) + "/tests/data/atlas/sslcert-msm15418551-prb29296.json";

nlohmann::json atlas_result(int64_t probe, int64_t msm, const std::string& target, const nlohmann::json& chain_b64,
                            int64_t ts) {
  nlohmann::json pems = nlohmann::json::array();
  for (const auto& c : chain_b64) {
    auto der = certs::unbase64(c.get<std::string>()).value();
    auto x = certs::from_der(der).value();
    pems.push_back(certs::to_pem(x.get()));
  }
  auto colon = target.rfind(':');
  return {{"af", 4},          {"cert", pems},         {"dst_addr", target.substr(0, colon)},
          {"dst_name", target.substr(0, colon)},      {"dst_port", target.substr(colon + 1)},
          {"fw", 5080},       {"method", "TLS"},      {"msm_id", msm},
          {"prb_id", probe},  {"rt", 12.5},           {"ttc", 3.25},
          {"timestamp", ts},  {"type", "sslcert"},    {"ver", "1.2"}};
}

}  // namespace

TEST(AtlasParse, AReadPublishedResultGivesItsProbeTargetAndChain) {
  auto r = drivers::parse_atlas_sslcert(test::read_file(kFixture), kFixture, "reviwiki.info");
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->size(), 1u);
  const auto& a = r->front();
  EXPECT_EQ(a.probe, 29296);
  EXPECT_EQ(a.measurement, 15418551);
  EXPECT_EQ(a.target.to_string(), "172.104.111.8:443");
  EXPECT_EQ(a.dst_name, "reviwiki.info");
  EXPECT_EQ(a.observation.tls_version, "TLSv1.2");
  EXPECT_DOUBLE_EQ(a.observation.connect_ms, 85.514185);
  EXPECT_EQ(a.observation.started_unix_ms, 1532751370000);
  ASSERT_EQ(a.observation.chain.size(), 3u);
  auto leaf = certs::from_der(a.observation.chain[0]).value();
  EXPECT_EQ(certs::dns_names(leaf.get()), (std::vector<std::string>{"reviwiki.info", "www.reviwiki.info"}));
}

TEST(AtlasParse, OtherResultsAndBrokenOnesAreRefusedByName) {
  auto ping = drivers::parse_atlas_sslcert(R"([{"type":"ping","prb_id":1}])", "p.json", "x");
  ASSERT_FALSE(ping);
  EXPECT_NE(ping.error().find("p.json: result 1"), std::string::npos) << ping.error();
  auto no_chain = drivers::parse_atlas_sslcert(R"({"type":"sslcert","prb_id":1,"dst_addr":"192.0.2.1"})", "n.json", "x");
  ASSERT_FALSE(no_chain);
  EXPECT_NE(no_chain.error().find("neither a cert chain nor err"), std::string::npos);
  auto err = drivers::parse_atlas_sslcert(
      "{\"type\":\"sslcert\",\"prb_id\":7,\"dst_addr\":\"192.0.2.1\",\"err\":\"connect: Connection refused\"}\n", "e.json", "x");
  ASSERT_TRUE(err) << err.error();
  EXPECT_EQ(err->front().observation.error, tls::ProbeError::connect_refused);
  auto alert = drivers::parse_atlas_sslcert(
      R"([{"type":"sslcert","prb_id":7,"dst_addr":"192.0.2.1","alert":{"level":2,"description":40}}])", "a.json", "x");
  ASSERT_TRUE(alert);
  EXPECT_EQ(alert->front().observation.alert, 40);
  // A timestamp whose milliseconds overflow (found by fuzz_atlas) is refused, not wrapped.
  auto late = drivers::parse_atlas_sslcert(
      R"([{"type":"sslcert","prb_id":7,"dst_addr":"192.0.2.1","timestamp":1532999999999751370,"err":"x"}])", "t.json", "x");
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().find("timestamp out of range"), std::string::npos) << late.error();
}

TEST(AtlasImport, ProbesBehindAndOutsideAnInterceptorAreJudgedStoredAndCompared) {
  lab::StandInWorld world;
  std::vector<lab::Listener> listeners;
  for (int i = 0; i < 6; ++i) {
    auto name = "site" + std::to_string(i) + ".example";
    listeners.push_back({{*net::IpAddress::parse("127.92.0." + std::to_string(i + 1)), 0},
                         i < 4 ? world.intercepted_site(name) : world.clean_site(name)});
  }
  auto server = lab::TlsServer::start(std::move(listeners), {});
  ASSERT_TRUE(server) << server.error();
  test::TempDir dir;
  test::write_pem(dir.file("root.pem"), {world.public_root().cert.get()});
  std::string targets;
  for (const auto& e : (*server)->endpoints()) targets += e.to_string() + "\n";
  test::write_file(dir.file("targets.txt"), targets);
  auto scan = test::run_mitmwatch({"scan", "--allow-private", "--quiet", "--ca-file", dir.file("root.pem"), "-i",
                                   dir.file("targets.txt"), "--sni", "facebook.com", "--control", "example.com", "-o",
                                   dir.file("scan.jsonl")});
  ASSERT_EQ(scan.exit_code, 0) << scan.err;

  // Probe 1001 saw what the scan saw; probe 1002 got the real chain for both SNIs.
  nlohmann::json tests = nlohmann::json::array(), controls = nlohmann::json::array();
  std::set<std::string> forged;
  for (const auto& r : test::parse_lines(test::read_file(dir.file("scan.jsonl")))) {
    const auto& control = r["attempts"][0];
    const auto& test_attempt = r["attempts"][1];
    ASSERT_EQ(control["role"], "control");
    if (r["verdict"] == "intercepted") forged.insert(r["target"].get<std::string>());
    tests.push_back(atlas_result(1001, 9001, r["target"], test_attempt["chain"], 1790000000));
    controls.push_back(atlas_result(1001, 9002, r["target"], control["chain"], 1790000030));
    tests.push_back(atlas_result(1002, 9001, r["target"], control["chain"], 1790000000));
    controls.push_back(atlas_result(1002, 9002, r["target"], control["chain"], 1790000030));
  }
  ASSERT_EQ(forged.size(), 4u);
  test::write_file(dir.file("test.json"), tests.dump());
  test::write_file(dir.file("control.json"), controls.dump());
  test::write_file(dir.file("probes.json"),
                   R"({"count":2,"results":[{"id":1001,"asn_v4":9198,"country_code":"KZ"},{"id":1002,"asn_v4":3356,"country_code":"US"}]})");
  auto db = dir.file("a.db");
  auto imp = test::run_mitmwatch({"atlas", "import", "--test", dir.file("test.json"), "--control", dir.file("control.json"),
                                  "--sni", "facebook.com", "--control-sni", "example.com", "--probes-file",
                                  dir.file("probes.json"), "--ca-file", dir.file("root.pem"), "-o",
                                  dir.file("atlas.jsonl"), "--db", db});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_NE(imp.err.find("12 records from 2 probes"), std::string::npos) << imp.err;
  for (const auto& r : test::parse_lines(test::read_file(dir.file("atlas.jsonl")))) {
    EXPECT_EQ(r["schema"], "mitmwatch.scan/1");
    bool behind = r["atlas"]["probe"] == 1001;
    bool expect_forged = behind && forged.count(r["target"].get<std::string>());
    EXPECT_EQ(r["verdict"], expect_forged ? "intercepted" : "clean") << r["target"] << " probe " << r["atlas"]["probe"];
    EXPECT_EQ(r["atlas"]["country"], behind ? "KZ" : "US");
    EXPECT_EQ(r["atlas"]["control_measurement"], 9002);
  }
  auto cmp = test::run_mitmwatch({"report", "--compare", "--db", db, "--ca-file", dir.file("root.pem"), "-o",
                                  dir.file("c.json")});
  ASSERT_EQ(cmp.exit_code, 0) << cmp.err;
  auto c = nlohmann::json::parse(test::read_file(dir.file("c.json")))["compare"];
  std::map<std::string, nlohmann::json> by;
  for (const auto& v : c["vantages"]) by[v["vantage"]] = v;
  ASSERT_EQ(by.count("atlas-1001-AS9198-KZ"), 1u);
  ASSERT_EQ(by.count("atlas-1002-AS3356-US"), 1u);
  EXPECT_EQ(by["atlas-1001-AS9198-KZ"]["hosts_intercepted"], 4);
  EXPECT_EQ(by["atlas-1002-AS3356-US"]["hosts_intercepted"], 0);
  for (const auto& d : c["intercepted_from_one_not_the_other"])
    if (d["intercepted_from"] == "atlas-1001-AS9198-KZ") {
      std::set<std::string> hosts;
      for (const auto& h : d["examples"]) hosts.insert(h);
      EXPECT_EQ(hosts, forged);
    }
}

TEST(AtlasDefine, WritesATestAndAControlPerTargetAndSendsNothing) {
  auto r = test::run_mitmwatch({"atlas", "define", "--country", "KZ", "--probes", "52", "--sni", "facebook.com",
                                "--control", "example.org", "--allow-private", "192.0.2.10", "192.0.2.11:8443"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["definitions"].size(), 4u);
  EXPECT_EQ(j["definitions"][0]["type"], "sslcert");
  EXPECT_EQ(j["definitions"][0]["hostname"], "facebook.com");
  EXPECT_EQ(j["definitions"][1]["hostname"], "example.org");
  EXPECT_EQ(j["definitions"][2]["target"], "192.0.2.11");
  EXPECT_EQ(j["definitions"][2]["port"], 8443);
  EXPECT_EQ(j["probes"][0]["type"], "country");
  EXPECT_EQ(j["probes"][0]["value"], "KZ");
  EXPECT_EQ(j["probes"][0]["requested"], 52);
  EXPECT_EQ(j["is_oneoff"], true);
  EXPECT_NE(r.err.find("Nothing was sent"), std::string::npos);
  auto bad = test::run_mitmwatch({"atlas", "define", "--country", "Kazakhstan", "192.0.2.10"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("Kazakhstan"), std::string::npos);
}
