// QUIC Initials as `mitmwatch pcap` and `fpserver --quic` read them. The first
// byte picks the path: even, the rest is a decrypted Initial payload (frames,
// CRYPTO reassembly, the ClientHello parser: what mutations can reach, since a
// mutated packet rarely decrypts); odd, the rest is datagrams, each behind a
// 2-byte length, into one InitialReader (long headers, coalescing, header and
// packet protection).
#include "fingerprint/fingerprints.hpp"
#include "quic/initial.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  mw::quic::Bytes in(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto frames = mw::quic::crypto_frames(in);
    if (!frames) return 0;
    mw::quic::CryptoStream stream;
    for (const auto& f : *frames) stream.add(f);
    if (auto m = stream.first_message())
      if (auto h = mw::fingerprint::parse_client_hello(m->second, 0)) (void)mw::fingerprint::ja4(*h, 'q');
    return 0;
  }
  mw::quic::InitialReader reader;
  for (size_t at = 0; at + 2 <= in.size();) {
    size_t n = static_cast<size_t>(in[at] << 8 | in[at + 1]);
    at += 2;
    n = std::min(n, in.size() - at);
    (void)reader.add(in.subspan(at, n));
    at += n;
  }
  if (reader.hello()) (void)mw::fingerprint::ja3(*reader.hello());
  return 0;
}
