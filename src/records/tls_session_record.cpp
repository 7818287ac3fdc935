#include "records/tls_session_record.hpp"

#include "certs/forensics.hpp"
#include "certs/x509.hpp"
#include "fingerprint/fingerprints.hpp"

#include <fmt/format.h>

namespace mw::records {
namespace {

using Json = nlohmann::ordered_json;

int64_t unix_ms(pcap::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string version_name(uint16_t v) {
  switch (v) {
    case 0x0304: return "TLSv1.3";
    case 0x0303: return "TLSv1.2";
    case 0x0302: return "TLSv1.1";
    case 0x0301: return "TLSv1.0";
    case 0x0300: return "SSLv3";
    default: return fmt::format("0x{:04x}", v);
  }
}

Json ttl_runs(const pcap::DirectionFacts& d) {
  Json out = Json::array();
  for (const auto& r : d.ttl_runs) out.push_back({{"ttl", r.ttl}, {"packets", r.packets}, {"from_packet", r.first_packet}});
  return out;
}

struct Flag {
  std::string kind, detail;
};

// Server-side packets whose TTL or IP ID breaks from the rest once and for
// all: the real server's SYN-ACK, then an injector's packets from another
// distance and another IP stack. Paths that flap (ECMP, load balancers that
// interleave hosts) change back and forth; they are not flagged.
void ttl_break(const pcap::TlsSession& s, std::vector<Flag>& flags) {
  const auto& runs = s.from_server.ttl_runs;
  if (runs.size() != 2 || runs[1].packets < 2) return;
  flags.push_back({"ttl-break", fmt::format("server packets' IP TTL changed {} -> {} at packet {} of {}, and stayed",
                                            runs[0].ttl, runs[1].ttl, runs[1].first_packet + 1, s.from_server.packets)});
}

void ip_id_break(const pcap::TlsSession& s, std::vector<Flag>& flags) {
  const auto& ids = s.from_server.ip_ids;
  size_t jumps = 0, at = 0;
  for (size_t i = 1; i < ids.size(); ++i) {
    if (ids[i - 1] == 0 || ids[i] == 0) continue;  // DF packets of some stacks (a SYN-ACK) carry 0
    uint32_t step = (ids[i] - ids[i - 1]) & 0xffff;
    if (step > kIpIdJump && step < 0x10000 - kIpIdJump) {
      ++jumps;
      at = i;
    }
  }
  if (jumps == 1 && ids.size() - at >= 2)
    flags.push_back({"ip-id-break", fmt::format("server packets' IP ID jumped {} -> {} at packet {}, and went on from there",
                                                ids[at - 1], ids[at], at + 1)});
}

}  // namespace

nlohmann::ordered_json to_json(const pcap::TlsSession& s, const SessionContext& ctx) {
  Json j;
  std::vector<Flag> flags;
  j["schema"] = kPcapSchema;
  j["file"] = ctx.file;
  j["transport"] = s.transport == 'q' ? "quic" : "tcp";
  j["stream"] = s.stream;
  j["client"] = s.client.to_string();
  j["server"] = s.server.to_string();
  j["roles"] = s.saw_syn ? "syn" : s.client_known ? "hello" : "guessed";
  j["first_seen_unix_ms"] = unix_ms(s.first_seen);
  j["last_seen_unix_ms"] = unix_ms(s.last_seen);

  std::string ja3_hash, ja4_value, tlsfp_value;
  if (const auto& h = s.client_hello) {
    auto ja3 = fingerprint::ja3(*h);
    auto ja4 = fingerprint::ja4(*h, s.transport, ctx.raw);
    ja3_hash = ja3.hash;
    ja4_value = ja4.ja4;
    tlsfp_value = fingerprint::tlsfp(*h);
    j["sni"] = h->sni ? Json(*h->sni) : Json(nullptr);
    j["alpn"] = h->alpn;
    j["client_version"] = version_name(h->version);
    Json versions = Json::array();
    for (uint16_t v : h->supported_versions)
      if (!fingerprint::is_grease(v)) versions.push_back(version_name(v));
    j["supported_versions"] = versions;
    j["ja3"] = ja3.hash;
    j["ja4"] = ja4.ja4;
    j["tlsfp"] = tlsfp_value;
    if (ctx.raw) {
      j["ja3_full"] = ja3.full;
      j["ja4_r"] = ja4.ja4_r;
      j["ja4_o"] = ja4.ja4_o;
      j["ja4_ro"] = ja4.ja4_ro;
    }
  } else {
    for (const char* k : {"sni", "ja3", "ja4", "tlsfp"}) j[k] = nullptr;
  }
  if (const auto& h = s.server_hello) {
    auto ja3s = fingerprint::ja3s(*h);
    auto ja4s = fingerprint::ja4s(*h, s.transport);
    j["version"] = version_name(h->negotiated_version());
    j["cipher"] = fmt::format("0x{:04x}", h->cipher);
    j["server_alpn"] = h->alpn ? Json(*h->alpn) : Json(nullptr);
    j["ja3s"] = ja3s.hash;
    j["ja4s"] = ja4s.ja4s;
    if (ctx.raw) {
      j["ja3s_full"] = ja3s.full;
      j["ja4s_r"] = ja4s.ja4s_r;
    }
  } else {
    for (const char* k : {"version", "ja3s", "ja4s"}) j[k] = nullptr;
  }
  if (s.server_alert) j["server_alert"] = {{"level", s.server_alert->first}, {"description", s.server_alert->second}};

  // The chain, when it went in clear (TLS <= 1.2).
  Json chain = Json::array();
  std::vector<tls::X509Ptr> parsed;
  for (const auto& der : s.chain) {
    chain.push_back(certs::base64(der));
    if (auto c = certs::from_der(der)) parsed.push_back(std::move(*c));
  }
  j["chain"] = std::move(chain);
  if (!parsed.empty()) {
    X509* leaf = parsed.front().get();
    j["leaf"] = {{"subject", certs::subject_text(leaf)},
                 {"issuer", certs::issuer_text(leaf)},
                 {"sha256", certs::cert_sha256(leaf)},
                 {"dns_names", certs::dns_names(leaf)}};
    std::vector<X509*> raw;
    for (const auto& c : parsed) raw.push_back(c.get());
    if (ctx.interceptors)
      if (auto hit = ctx.interceptors->match(raw)) {
        j["interceptor"] = {{"name", hit->name}, {"how", hit->how}, {"chain_index", hit->chain_index}};
        flags.push_back({"known-interceptor", fmt::format("chain {} {} ({})", hit->how, hit->name, hit->source)});
      }
    for (const auto& lint : certs::lints(certs::facts_of(leaf), false))
      flags.push_back({"forgery-sign", "leaf: " + lint});
  }
  if (ctx.fingerprints && s.client_hello)
    if (auto hit = ctx.fingerprints->match(ja3_hash, ja4_value, tlsfp_value))
      flags.push_back({"interceptor-fingerprint",
                       fmt::format("ClientHello {} {} is {}'s ({})", hit->field, hit->value, hit->name, hit->source)});
  ttl_break(s, flags);
  ip_id_break(s, flags);

  j["ttl"] = {{"client", ttl_runs(s.from_client)}, {"server", ttl_runs(s.from_server)}};
  auto shown = [](const std::vector<uint32_t>& ids) {
    return std::vector<uint32_t>(ids.begin(), ids.begin() + static_cast<long>(std::min(ids.size(), kIpIdsShown)));
  };
  j["ip_id"] = {{"client", shown(s.from_client.ip_ids)}, {"server", shown(s.from_server.ip_ids)}};
  j["packets"] = {{"client", s.from_client.packets}, {"server", s.from_server.packets}};
  if (s.client_preamble || s.server_preamble)
    j["preamble_bytes"] = {{"client", s.client_preamble}, {"server", s.server_preamble}};
  Json f = Json::array();
  for (const auto& x : flags) f.push_back({{"kind", x.kind}, {"detail", x.detail}});
  j["flags"] = std::move(f);
  j["problems"] = s.problems;
  return j;
}

}  // namespace mw::records
