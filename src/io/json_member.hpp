// Members of untrusted JSON objects. nlohmann's value(key, default) throws
// when the member has another type, and a const object's operator[] on a
// missing key is undefined; parsers of files anyone may hand over use these.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace mw::io {

// The member as a string, or "" when it is missing or not a string.
template <class Json>
std::string string_member(const Json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->template get<std::string>() : std::string();
}

// The member as a signed 64-bit integer, or nullopt when it is missing, not a
// number, or a number no int64_t holds: converting a double past int64's
// range (1e20 in a hand-written record) or an unsigned past INT64_MAX would be
// undefined or wrap. A fractional double is truncated toward zero.
template <class Json>
std::optional<int64_t> int64_member(const Json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_float()) {
    double d = it->template get<double>();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return std::nullopt;
    return static_cast<int64_t>(d);
  }
  if (it->is_number_unsigned()) {
    auto u = it->template get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (it->is_number_integer()) return it->template get<int64_t>();
  return std::nullopt;
}

}  // namespace mw::io
