#include "hello/client_hello.hpp"
#include "io/json_member.hpp"

#include "fingerprint/handshake_stream.hpp"
#include "tls/ossl.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>

namespace mw {
std::string_view embedded_hello_templates_json();  // generated from data/hello-templates.json
}

namespace mw::hello {
namespace {

using fingerprint::Extension;
namespace ext = fingerprint::ext;
constexpr uint16_t kPadding = 0x0015, kPreSharedKey = 0x0029;

void put16(std::vector<uint8_t>& out, size_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void put24(std::vector<uint8_t>& out, size_t v) {
  out.push_back(static_cast<uint8_t>(v >> 16));
  put16(out, v & 0xffff);
}

std::vector<uint8_t> server_name_body(const std::vector<std::string>& names) {
  std::vector<uint8_t> list;
  for (const auto& n : names) {
    list.push_back(0);  // host_name
    put16(list, n.size());
    list.insert(list.end(), n.begin(), n.end());
  }
  std::vector<uint8_t> body;
  put16(body, list.size());
  body.insert(body.end(), list.begin(), list.end());
  return body;
}

std::optional<std::vector<uint8_t>> from_hex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<uint8_t> out;
  int high = -1;
  for (char c : hex) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    int v = nibble(c);
    if (v < 0) return std::nullopt;
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<uint8_t>(high << 4 | v));
      high = -1;
    }
  }
  if (high >= 0) return std::nullopt;
  return out;
}

// The ClientHello of a byte stream that starts with TLS records.
tl::expected<fingerprint::ClientHello, std::string> hello_from_records(fingerprint::Bytes records) {
  fingerprint::HandshakeStream stream;
  stream.feed(records);
  auto message = stream.next();
  if (!message)
    return tl::unexpected(stream.reason().empty() ? std::string("no whole handshake message") : stream.reason());
  if (message->type != fingerprint::handshake_type::kClientHello)
    return tl::unexpected(fmt::format("handshake message type {} is not a ClientHello", message->type));
  return fingerprint::parse_client_hello(message->body, message->record_version);
}

size_t message_size(const fingerprint::ClientHello& h) {
  size_t n = 4 + 2 + 32 + 1 + h.session_id.size() + 2 + 2 * h.ciphers.size() + 1 + h.compression.size();
  if (!h.extensions.empty()) {
    n += 2;
    for (const auto& x : h.extensions) n += 4 + x.data.size();
  }
  return n;
}

}  // namespace

tl::expected<std::vector<Template>, std::string> parse_templates(std::string_view json, const std::string& origin) {
  auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("templates") || !doc["templates"].is_array())
    return tl::unexpected(origin + ": not a JSON object with a \"templates\" array");
  std::vector<Template> out;
  for (size_t i = 0; i < doc["templates"].size(); ++i) {
    const auto& t = doc["templates"][i];
    std::string where = fmt::format("{}: templates[{}]", origin, i);
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("hex") || !t["hex"].is_string())
      return tl::unexpected(where + ": needs string fields \"name\" and \"hex\"");
    auto bytes = from_hex(t["hex"].get<std::string>());
    if (!bytes) return tl::unexpected(where + ".hex: not hexadecimal");
    auto hello = hello_from_records(*bytes);
    if (!hello) return tl::unexpected(where + ".hex: " + hello.error());
    Template tpl{t["name"].get<std::string>(), io::string_member(t, "source"), std::move(*hello)};
    out.push_back(std::move(tpl));
  }
  return out;
}

const std::vector<Template>& builtin_templates() {
  // Parsed once; the shipped file is checked by the tests, so failure here is a build error.
  static const std::vector<Template> templates = [] {
    auto t = parse_templates(embedded_hello_templates_json(), "data/hello-templates.json");
    if (!t) std::abort();
    return *t;
  }();
  return templates;
}

tl::expected<Template, std::string> find_template(const std::string& name) {
  std::string names;
  for (const auto& t : builtin_templates()) {
    if (t.name == name) return t;
    names += (names.empty() ? "" : ", ") + t.name;
  }
  return tl::unexpected(fmt::format("unknown hello template '{}' (known: openssl, {})", name, names));
}

tl::expected<Template, std::string> template_from_context(SSL_CTX* ctx, const std::string& name) {
  tls::SslPtr ssl(SSL_new(ctx));
  if (!ssl) return tl::unexpected("SSL_new: " + tls::drain_errors());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // the SSL owns both
  SSL_set_tlsext_host_name(ssl.get(), "example.com");
  SSL_connect(ssl.get());  // writes the hello, then wants to read
  ERR_clear_error();
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  if (n <= 0) return tl::unexpected(std::string("the OpenSSL context wrote no ClientHello"));
  auto hello = hello_from_records({reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(n)});
  if (!hello) return tl::unexpected("OpenSSL's own ClientHello: " + hello.error());
  return Template{name, "the OpenSSL 3 context the scan uses (tls::ClientProfile)", std::move(*hello)};
}

std::vector<uint8_t> build_handshake(const fingerprint::ClientHello& base, const HelloSpec& spec,
                                     const uint8_t (&random)[64]) {
  std::vector<Extension> exts;
  bool sni_done = false;
  std::optional<size_t> padding;
  for (const auto& x : base.extensions) {
    if (x.type == ext::kServerName) {
      // One server_name extension, where the template's first one was.
      if (spec.send_sni && !sni_done) exts.push_back({ext::kServerName, server_name_body(spec.server_names)});
      sni_done = true;
      continue;
    }
    if (x.type == ext::kSupportedVersions && spec.tls12_only) continue;
    if (x.type == kPadding) padding = exts.size();
    exts.push_back(x);
  }
  if (spec.send_sni && !sni_done) exts.insert(exts.begin(), {ext::kServerName, server_name_body(spec.server_names)});
  if (padding) exts[*padding].data.clear();
  size_t target = spec.pad_to;
  if (target == 0 && padding) target = message_size(base);
  if (spec.pad_to > 0 && !padding) {
    // pre_shared_key must stay last (RFC 8446 4.2.11): padding goes before it.
    size_t at = !exts.empty() && exts.back().type == kPreSharedKey ? exts.size() - 1 : exts.size();
    exts.insert(exts.begin() + static_cast<long>(at), {kPadding, {}});
    padding = at;
  }
  fingerprint::ClientHello shaped = base;
  shaped.extensions = exts;
  if (padding) {
    size_t size = message_size(shaped);
    exts[*padding].data.assign(target > size ? target - size : 0, 0);
  }

  std::vector<uint8_t> body;
  put16(body, base.version);
  body.insert(body.end(), random, random + 32);
  body.push_back(static_cast<uint8_t>(base.session_id.size()));
  body.insert(body.end(), random + 32, random + 32 + std::min<size_t>(base.session_id.size(), 32));
  put16(body, 2 * base.ciphers.size());
  for (uint16_t c : base.ciphers) put16(body, c);
  body.push_back(static_cast<uint8_t>(base.compression.size()));
  body.insert(body.end(), base.compression.begin(), base.compression.end());
  if (!exts.empty()) {
    size_t total = 0;
    for (const auto& x : exts) total += 4 + x.data.size();
    put16(body, total);
    for (const auto& x : exts) {
      put16(body, x.type);
      put16(body, x.data.size());
      body.insert(body.end(), x.data.begin(), x.data.end());
    }
  }
  std::vector<uint8_t> message{fingerprint::handshake_type::kClientHello};
  put24(message, body.size());
  message.insert(message.end(), body.begin(), body.end());
  return message;
}

Wire to_wire(const std::vector<uint8_t>& handshake, uint16_t record_version, const HelloSpec& spec) {
  std::vector<size_t> cuts;
  for (size_t c : spec.record_splits)
    if (c > 0 && c < handshake.size()) cuts.push_back(c);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  cuts.push_back(handshake.size());
  Wire w;
  size_t from = 0;
  for (size_t to : cuts) {
    // A record holds at most 2^14 bytes (RFC 8446 5.1).
    for (size_t at = from; at < to;) {
      size_t n = std::min<size_t>(to - at, 16384);
      w.bytes.push_back(22);
      put16(w.bytes, record_version ? record_version : 0x0301);
      put16(w.bytes, n);
      w.bytes.insert(w.bytes.end(), handshake.begin() + static_cast<long>(at), handshake.begin() + static_cast<long>(at + n));
      at += n;
    }
    from = to;
  }
  w.segments.push_back(0);
  if (spec.bytewise) {
    for (size_t i = 1; i < w.bytes.size(); ++i) w.segments.push_back(i);
  } else {
    for (size_t c : spec.segment_splits)
      if (c > 0 && c < w.bytes.size()) w.segments.push_back(c);
    std::sort(w.segments.begin(), w.segments.end());
    w.segments.erase(std::unique(w.segments.begin(), w.segments.end()), w.segments.end());
  }
  return w;
}

}  // namespace mw::hello
