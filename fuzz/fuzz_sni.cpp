// ClientHello bytes as the interception device reads them off the wire.
// Inputs that are hex text (the shared 2019 ClientHellos) are decoded first.
#include "fingerprint/sni.hpp"

#include <cctype>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  bool hex = size >= 2;
  for (size_t i = 0; i < size && hex; ++i) hex = std::isxdigit(data[i]) || std::isspace(data[i]);
  if (hex) {
    std::string digits;
    for (size_t i = 0; i < size; ++i)
      if (std::isxdigit(data[i])) digits.push_back(static_cast<char>(data[i]));
    bytes.clear();
    for (size_t i = 0; i + 1 < digits.size(); i += 2) bytes.push_back(static_cast<uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  }
  auto r = mw::fingerprint::client_hello_sni(bytes.data(), bytes.size());
  if (r.sni && r.sni->size() > bytes.size()) __builtin_trap();  // a name longer than its input: a bounds bug
  return 0;
}
