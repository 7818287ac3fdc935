// One direction of a TLS connection's bytes, as the pcap reader and the
// fingerprint server get them: records unwrapped (fed whole and again in
// pieces, which must agree), every handshake message parsed, every
// fingerprint computed. Hex text inputs (the shared 2019 ClientHellos) are
// decoded first.
#include "hex_input.hpp"
#include "fingerprint/fingerprints.hpp"
#include "fingerprint/handshake_stream.hpp"

#include <string>
#include <vector>

namespace {

using namespace mw::fingerprint;

std::vector<std::string> fingerprints_of(HandshakeStream& s) {
  std::vector<std::string> out;
  while (auto m = s.next()) {
    if (m->type == handshake_type::kClientHello) {
      if (auto h = parse_client_hello(m->body, m->record_version)) {
        auto j = ja4(*h);
        out.push_back(ja3(*h).full + " " + j.ja4 + " " + j.ja4_ro + " " + tlsfp(*h));
      }
    } else if (m->type == handshake_type::kServerHello) {
      if (auto h = parse_server_hello(m->body, m->record_version)) out.push_back(ja3s(*h).full + " " + ja4s(*h).ja4s_r);
    } else if (m->type == handshake_type::kCertificate) {
      if (auto c = parse_certificate_list(m->body)) out.push_back(std::to_string(c->size()));
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = mw::fuzz::bytes_of_input(data, size);
  HandshakeStream whole(64 * 1024);
  whole.feed(bytes);
  auto a = fingerprints_of(whole);
  HandshakeStream pieces(64 * 1024);
  size_t step = bytes.empty() ? 1 : 1 + bytes[0] % 13;
  for (size_t i = 0; i < bytes.size(); i += step)
    pieces.feed({bytes.data() + i, std::min(step, bytes.size() - i)});
  auto b = fingerprints_of(pieces);
  // Split delivery may stop earlier only where the whole stream failed too.
  if (whole.state() == HandshakeStream::State::reading && pieces.state() == HandshakeStream::State::reading && a != b)
    __builtin_trap();
  return 0;
}
