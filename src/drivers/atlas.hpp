// RIPE Atlas `sslcert` measurements: the definitions to submit (nothing is
// sent from here), and their results read back into scan records, a probe a
// vantage. Atlas probes cannot retry or compare by themselves, so the test
// SNI and the control run as two measurements; their results are paired per
// probe and target and judged with the scan's own verdict rules.
#pragma once

#include "records/scan_record.hpp"

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mw::drivers {

struct AtlasResult {
  int64_t probe = 0, measurement = 0;
  net::Endpoint target;
  std::string dst_name;
  tls::Observation observation;  // chain, version, timings; error from `err`/`alert`
};

// A JSON array of results (as the Atlas API returns them) or JSON Lines.
// Results of other types are refused, naming `origin` and the index.
tl::expected<std::vector<AtlasResult>, std::string> parse_atlas_sslcert(std::string_view text,
                                                                        const std::string& origin,
                                                                        const std::string& sni);

struct AtlasProbe {
  std::optional<int64_t> asn;
  std::string country;
};
// The Atlas probes API's answer ({"results": [{"id", "asn_v4", "country_code"}]}) or a bare array.
tl::expected<std::map<int64_t, AtlasProbe>, std::string> parse_atlas_probes(std::string_view text,
                                                                           const std::string& origin);
// "atlas-29296", or "atlas-29296-AS9198-KZ" with its metadata.
std::string atlas_vantage(int64_t probe, const std::map<int64_t, AtlasProbe>& probes);

struct AtlasRecord {
  int64_t probe = 0;
  std::string vantage;
  nlohmann::ordered_json record;  // mitmwatch.scan/1 with an "atlas" object
};

// Pairs each test result with the same probe's control result for the same
// target (the nearest in time) and judges it; a test without a control is
// `unreachable` with a reason saying so.
std::vector<AtlasRecord> judge_atlas(std::vector<AtlasResult> tests, std::vector<AtlasResult> controls,
                                     const std::string& sni, const std::string& control_sni,
                                     const tls::TrustStore& trust, const certs::InterceptorRegistry& registry,
                                     const std::map<int64_t, AtlasProbe>& probes);

struct AtlasSelection {
  std::string type = "country";  // country, asn, probes, area
  std::string value;
  int requested = 10;
};
// The body of POST /api/v2/measurements/: per target one sslcert with the
// test SNI and one with the control, one-off, from the selected probes.
nlohmann::ordered_json atlas_definitions(const std::vector<net::Endpoint>& targets, const std::string& sni,
                                         const std::string& control_sni, const AtlasSelection& probes);

}  // namespace mw::drivers
