#include "records/scan_record.hpp"

#include "certs/x509.hpp"

namespace mw::records {
namespace {

using Json = nlohmann::ordered_json;

// Certificate names are whatever bytes the server sent; JSON needs UTF-8.
// Invalid sequences become U+FFFD so a hostile name cannot break a record.

Json null_if_empty(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }

}  // namespace

std::string utf8_safe(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    auto c = static_cast<unsigned char>(in[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= in.size();
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(in[i + k]) & 0xc0) == 0x80;
    if (ok && len > 1) {  // reject overlong forms, surrogates and values past U+10FFFF
      uint32_t cp = c & (0x7f >> len);
      for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(in[i + k]) & 0x3f);
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    }
    if (ok) {
      out.append(in, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

nlohmann::ordered_json leaf_summary(const tls::Observation& obs) {
  X509* c = tls::leaf(obs);
  if (!c) return nullptr;
  const tls::Der& der = obs.chain.front();
  Json names = Json::array();
  for (const auto& n : certs::dns_names(c)) names.push_back(utf8_safe(n));
  return {{"subject", utf8_safe(certs::subject_text(c))},
          {"issuer", utf8_safe(certs::issuer_text(c))},
          {"sha256", certs::sha256_hex(der)},
          {"spki_sha256", certs::spki_sha256(c)},
          {"dns_names", std::move(names)}};
}

nlohmann::ordered_json to_json(const tls::Observation& obs, const std::string& role) {
  Json j = {
      {"role", role},
      {"sni", null_if_empty(obs.sni)},
      {"started_ms", obs.started_unix_ms},
      {"ok", obs.ok()},
      {"error", null_if_empty(tls::error_name(obs))},
      {"error_detail", null_if_empty(utf8_safe(obs.error_detail))},
      {"connect_ms", obs.connect_ms},
      {"handshake_ms", obs.handshake_ms},
      {"tls_version", null_if_empty(obs.tls_version)},
      {"cipher", null_if_empty(obs.cipher)},
      {"alpn", null_if_empty(obs.alpn)},
  };
  if (obs.request_sent) j["http_status"] = obs.http_status >= 0 ? Json(obs.http_status) : Json(nullptr);
  Json chain = Json::array();
  for (const auto& der : obs.chain) chain.push_back(certs::base64(der));
  j["chain"] = std::move(chain);
  j["leaf"] = obs.chain.empty() ? Json(nullptr) : leaf_summary(obs);
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
    j["interceptor"] = {{"name", utf8_safe(obs.interceptor->name)},
                        {"how", obs.interceptor->how},
                        {"chain_index", obs.interceptor->chain_index},
                        {"root_sha256", obs.interceptor->root_sha256}};
  else
    j["interceptor"] = nullptr;
  return j;
}

nlohmann::ordered_json to_json(const ScanRecord& r) {
  Json reasons = Json::array();
  for (const auto& why : r.result.reasons) reasons.push_back(utf8_safe(why));
  Json attempts = Json::array();
  Json interceptor = nullptr;
  for (const auto& a : r.attempts) {
    attempts.push_back(to_json(a.observation, a.role));
    if (a.role == "test" && a.observation.interceptor && interceptor.is_null())
      interceptor = utf8_safe(a.observation.interceptor->name);
  }
  return {{"schema", kScanSchema},
          {"target", r.target.to_string()},
          {"ip", r.target.ip.to_string()},
          {"port", r.target.port},
          {"sni", null_if_empty(r.sni)},
          {"control_sni", null_if_empty(r.control_sni)},
          {"verdict", verdict::to_string(r.result.verdict)},
          {"reasons", reasons},
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
