// Fuzz inputs that are hex text (the shared 2019 ClientHellos are) are
// decoded to the bytes they spell; anything else is taken as is.
#pragma once

#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

namespace mw::fuzz {

inline std::vector<uint8_t> bytes_of_input(const uint8_t* data, size_t size) {
  bool hex = size >= 2;
  for (size_t i = 0; i < size && hex; ++i) hex = std::isxdigit(data[i]) || std::isspace(data[i]);
  if (!hex) return {data, data + size};
  std::string digits;
  for (size_t i = 0; i < size; ++i)
    if (std::isxdigit(data[i])) digits.push_back(static_cast<char>(data[i]));
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < digits.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace mw::fuzz
