// ClientHello bytes as the interception device reads them off the wire.
// Inputs that are hex text (the shared 2019 ClientHellos) are decoded first.
#include "hex_input.hpp"
#include "fingerprint/sni.hpp"

#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = mw::fuzz::bytes_of_input(data, size);
  auto r = mw::fingerprint::client_hello_sni(bytes.data(), bytes.size());
  if (r.sni && r.sni->size() > bytes.size()) __builtin_trap();  // a name longer than its input: a bounds bug
  return 0;
}
