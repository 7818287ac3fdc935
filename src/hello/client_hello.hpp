// A ClientHello engine of our own: templates taken from real clients and
// mutations OpenSSL cannot make (two server_name entries, an empty one, a
// hello split over records or TCP segments at a chosen byte). Built over the
// parser's types (fingerprint::ClientHello), so every hello we send parses
// back with the same code that reads captures.
#pragma once

#include "fingerprint/hello.hpp"

#include <tl/expected.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;

namespace mw::hello {

struct Template {
  std::string name;
  std::string source;  // where the hello was taken from
  fingerprint::ClientHello hello;
};

// Templates from JSON ({"templates": [{"name", "source", "hex"}]}, one TLS
// record each); `origin` names the input in errors.
tl::expected<std::vector<Template>, std::string> parse_templates(std::string_view json, const std::string& origin);
// data/hello-templates.json, compiled in: chrome, firefox, fb2019, minimal12.
const std::vector<Template>& builtin_templates();
// The hello an OpenSSL client context sends (made in memory, nothing sent).
tl::expected<Template, std::string> template_from_context(SSL_CTX* ctx, const std::string& name);
// A built-in template by name, or the list of names in the error.
tl::expected<Template, std::string> find_template(const std::string& name);

struct HelloSpec {
  // server_name entries in order; empty with `send_sni` false: no extension.
  // One empty string: an entry of length zero.
  std::vector<std::string> server_names;
  bool send_sni = true;
  // Pad the handshake message to at least this many bytes (RFC 7685); 0: keep
  // the template's padding (resized so the length stays the template's).
  size_t pad_to = 0;
  // Offer TLS 1.2 at most (drops supported_versions): the server's chain then
  // comes in clear, which is what a raw probe reads.
  bool tls12_only = false;
  // Byte offsets in the handshake message where a new TLS record starts.
  std::vector<size_t> record_splits;
  // Byte offsets on the wire where a new TCP segment starts; `bytewise`: every byte.
  std::vector<size_t> segment_splits;
  bool bytewise = false;
};

// The handshake message (type, length, body) for `base` with `spec`'s
// changes; `random` fills the random and session id (32 + 32 bytes used).
std::vector<uint8_t> build_handshake(const fingerprint::ClientHello& base, const HelloSpec& spec,
                                     const uint8_t (&random)[64]);

struct Wire {
  std::vector<uint8_t> bytes;    // the records
  std::vector<size_t> segments;  // start offsets of each TCP segment, first 0
};
// Wraps a handshake message into records per spec, and plans its segments.
Wire to_wire(const std::vector<uint8_t>& handshake, uint16_t record_version, const HelloSpec& spec);

}  // namespace mw::hello
