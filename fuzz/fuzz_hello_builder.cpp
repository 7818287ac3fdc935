// The ClientHello builder and the parser, round trip: any hello the parser
// accepts (or a built-in template, chosen by the first byte) is rebuilt with
// mutations drawn from the input, and must parse back with its ciphers, its
// server_name entries as asked, and its records joined whatever the splits.
// The raw probe's reading of a server's flight is the parsers of fuzz_hello.
#include "hex_input.hpp"
#include "fingerprint/handshake_stream.hpp"
#include "hello/client_hello.hpp"

#include <string>
#include <vector>

using namespace mw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = fuzz::bytes_of_input(data, size);
  if (bytes.empty()) return 0;
  uint8_t flags = bytes[0];
  // The base hello: the input itself when it is one, else a template.
  fingerprint::ClientHello base;
  {
    fingerprint::HandshakeStream s(64 * 1024);
    s.feed(bytes);
    auto m = s.next();
    auto parsed = m && m->type == 1 ? fingerprint::parse_client_hello(m->body) : tl::unexpected(std::string("none"));
    const auto& templates = hello::builtin_templates();
    base = parsed ? *parsed : templates[flags % templates.size()].hello;
  }
  hello::HelloSpec spec;
  spec.send_sni = !(flags & 0x10);
  spec.tls12_only = flags & 0x20;
  if (flags & 0x40) spec.pad_to = 64 + bytes.size() % 2048;
  // Names: the input's bytes after the first, cut at '\n', at most 4 of 200 bytes.
  std::string name;
  for (size_t i = 1; i < bytes.size() && spec.server_names.size() < 4; ++i) {
    if (bytes[i] == '\n' || name.size() == 200) {
      spec.server_names.push_back(name);
      name.clear();
    } else {
      name.push_back(static_cast<char>(bytes[i]));
    }
  }
  if (spec.server_names.size() < 4 && !name.empty()) spec.server_names.push_back(name);
  if (!spec.send_sni) spec.server_names.clear();
  for (size_t i = 1; i + 1 < bytes.size() && i < 9; i += 2) {
    spec.record_splits.push_back(bytes[i] * 3u);
    spec.segment_splits.push_back(bytes[i + 1] * 5u);
  }
  // A hello with more than 64 KiB of extensions cannot be built: skip it.
  size_t ext_total = 0;
  for (const auto& x : base.extensions) ext_total += 4 + x.data.size();
  for (const auto& n : spec.server_names) ext_total += 3 + n.size();
  if (ext_total + spec.pad_to + 64 > 0xffff) return 0;

  uint8_t random[64] = {};
  auto message = hello::build_handshake(base, spec, random);
  auto wire = hello::to_wire(message, base.record_version, spec);
  if (wire.segments.empty() || wire.segments.front() != 0) __builtin_trap();
  for (size_t i = 1; i < wire.segments.size(); ++i)
    if (wire.segments[i] <= wire.segments[i - 1] || wire.segments[i] >= wire.bytes.size()) __builtin_trap();
  fingerprint::HandshakeStream s(128 * 1024, false);
  s.feed(wire.bytes);
  auto m = s.next();
  if (!m || m->body.size() + 4 != message.size()) __builtin_trap();
  auto again = fingerprint::parse_client_hello(m->body);
  if (!again || again->ciphers != base.ciphers) __builtin_trap();
  if (spec.send_sni && again->server_names != spec.server_names) __builtin_trap();
  if (!spec.send_sni && again->sni) __builtin_trap();
  if (spec.pad_to && message.size() < spec.pad_to) __builtin_trap();
  return 0;
}
