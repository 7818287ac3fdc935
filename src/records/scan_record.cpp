#include "records/scan_record.hpp"

#include "certs/x509.hpp"

namespace mw::records {
namespace {

using Json = nlohmann::ordered_json;

Json leaf_summary(const tls::Der& der) {
  auto cert = certs::from_der(der);
  if (!cert) return nullptr;
  X509* c = cert->get();
  return {{"subject", certs::subject_text(c)},
          {"issuer", certs::issuer_text(c)},
          {"sha256", certs::sha256_hex(der)},
          {"spki_sha256", certs::spki_sha256(c)},
          {"dns_names", certs::dns_names(c)}};
}

Json null_if_empty(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }

}  // namespace

nlohmann::ordered_json to_json(const tls::Observation& obs, const std::string& role) {
  Json j = {
      {"role", role},
      {"sni", null_if_empty(obs.sni)},
      {"started_ms", obs.started_unix_ms},
      {"ok", obs.ok()},
      {"error", null_if_empty(tls::error_name(obs))},
      {"error_detail", null_if_empty(obs.error_detail)},
      {"connect_ms", obs.connect_ms},
      {"handshake_ms", obs.handshake_ms},
      {"tls_version", null_if_empty(obs.tls_version)},
      {"cipher", null_if_empty(obs.cipher)},
      {"alpn", null_if_empty(obs.alpn)},
  };
  Json chain = Json::array();
  for (const auto& der : obs.chain) chain.push_back(certs::base64(der));
  j["chain"] = std::move(chain);
  j["leaf"] = obs.chain.empty() ? Json(nullptr) : leaf_summary(obs.chain.front());
  if (obs.ok()) {
    j["trusted"] = obs.trust.trusted;
    j["verify_error"] = null_if_empty(obs.trust.verify_error);
    j["name_match"] = obs.trust.name_match ? Json(*obs.trust.name_match) : Json(nullptr);
  } else {
    j["trusted"] = nullptr;
    j["verify_error"] = nullptr;
    j["name_match"] = nullptr;
  }
  if (obs.interceptor)
    j["interceptor"] = {{"name", obs.interceptor->name},
                        {"how", obs.interceptor->how},
                        {"chain_index", obs.interceptor->chain_index},
                        {"root_sha256", obs.interceptor->root_sha256}};
  else
    j["interceptor"] = nullptr;
  return j;
}

nlohmann::ordered_json to_json(const ScanRecord& r) {
  Json attempts = Json::array();
  Json interceptor = nullptr;
  for (const auto& a : r.attempts) {
    attempts.push_back(to_json(a.observation, a.role));
    if (a.role == "test" && a.observation.interceptor && interceptor.is_null())
      interceptor = a.observation.interceptor->name;
  }
  return {{"schema", kScanSchema},
          {"target", r.target.to_string()},
          {"ip", r.target.ip.to_string()},
          {"port", r.target.port},
          {"sni", null_if_empty(r.sni)},
          {"control_sni", null_if_empty(r.control_sni)},
          {"verdict", verdict::to_string(r.result.verdict)},
          {"reasons", r.result.reasons},
          {"interceptor", interceptor},
          {"intercepted_attempts", r.intercepted_attempts},
          {"attempts", std::move(attempts)}};
}

std::string record_key(const std::string& target, const std::string& sni) { return target + "\t" + sni; }

std::string record_key(const nlohmann::json& record) {
  if (!record.is_object() || !record.contains("target") || !record["target"].is_string()) return {};
  std::string sni;
  if (record.contains("sni") && record["sni"].is_string()) sni = record["sni"].get<std::string>();
  return record_key(record["target"].get<std::string>(), sni);
}

}  // namespace mw::records
