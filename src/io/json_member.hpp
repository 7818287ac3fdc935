// Members of untrusted JSON objects. nlohmann's value(key, default) throws
// when the member has another type, and a const object's operator[] on a
// missing key is undefined; parsers of files anyone may hand over use these.
#pragma once

#include <string>

namespace mw::io {

// The member as a string, or "" when it is missing or not a string.
template <class Json>
std::string string_member(const Json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->template get<std::string>() : std::string();
}

}  // namespace mw::io
