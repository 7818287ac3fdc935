// The scan record: one per (target, SNI), with every attempt. Field names of
// the JSON form live here only; docs/schema.md describes them.
#pragma once

#include "net/address.hpp"
#include "tls/observation.hpp"
#include "verdict/verdict.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace mw::records {

inline constexpr const char* kScanSchema = "mitmwatch.scan/1";

struct Attempt {
  std::string role;  // "control", "test", "control-recheck"
  tls::Observation observation;
};

struct ScanRecord {
  net::Endpoint target;
  std::string sni;          // the test SNI; empty for a control-only record
  size_t test_index = 0;    // into ScanOptions::test_snis (not written: drivers map it to their own fields)
  std::string control_sni;  // empty: the control sent no SNI
  verdict::Comparison result;
  size_t intercepted_attempts = 0;
  std::vector<Attempt> attempts;
};

nlohmann::ordered_json to_json(const ScanRecord& record);
nlohmann::ordered_json to_json(const tls::Observation& obs, const std::string& role);
// `in` with bytes that are not UTF-8 replaced, so a JSON dump cannot throw on a hostile name.
std::string utf8_safe(const std::string& in);
// Subject, issuer, hashes and names of the leaf; null without one.
nlohmann::ordered_json leaf_summary(const tls::Observation& obs);

// The resume key of a record: target and test SNI.
std::string record_key(const std::string& target, const std::string& sni);
// Reads it back from a JSON record; empty when the record is not a scan record.
std::string record_key(const nlohmann::json& record);

}  // namespace mw::records
