#include "net/opt_out.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace mw::net {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

bool is_name(std::string_view s) {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.front() == '-') return false;
  bool letter = false;
  for (char c : s) {
    if (std::isalpha(static_cast<unsigned char>(c))) letter = true;
    else if (!std::isdigit(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') return false;
  }
  return letter;  // all digits and dots is an address gone wrong, not a name
}

}  // namespace

bool OptOut::covers_name(std::string_view name) const {
  std::string n = lower(name);
  if (std::find(names.begin(), names.end(), n) != names.end()) return true;
  for (const auto& s : suffixes)
    if ((n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0) || "." + n == s) return true;
  return false;
}

void OptOut::add(const OptOut& more) {
  prefixes.insert(prefixes.end(), more.prefixes.begin(), more.prefixes.end());
  names.insert(names.end(), more.names.begin(), more.names.end());
  suffixes.insert(suffixes.end(), more.suffixes.begin(), more.suffixes.end());
}

tl::expected<OptOut, std::string> read_opt_out(std::istream& in, const std::string& source) {
  OptOut out;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    auto entry = std::string_view(line).substr(first);
    entry = entry.substr(0, entry.find_last_not_of(" \t\r") + 1);
    if (auto p = Prefix::parse(entry)) {
      out.prefixes.push_back(*p);
    } else if (entry.rfind("*.", 0) == 0 && is_name(entry.substr(2))) {
      out.suffixes.push_back("." + lower(entry.substr(2)));
    } else if (is_name(entry)) {
      out.names.push_back(lower(entry));
    } else {
      return tl::unexpected(source + ":" + std::to_string(n) + ": '" + std::string(entry) +
                            "' is not an address, a prefix, a name or *.name");
    }
  }
  if (in.bad()) return tl::unexpected(source + ": read error");
  return out;
}

std::string default_opt_out_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/mitmwatch/opt-out.txt";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.config/mitmwatch/opt-out.txt";
}

}  // namespace mw::net
