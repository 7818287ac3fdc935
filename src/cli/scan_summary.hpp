// Counts of a scan's records, and the summary printed at its end (the
// report's "459 of 6,736 (7.0 %)" line).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <set>
#include <string>

namespace mw::cli {

class ScanSummary {
 public:
  template <typename Json>
  void add(const Json& record) {
    add(record.value("verdict", std::string()), record.value("target", std::string()));
  }
  void add(const std::string& verdict, const std::string& target);
  // `targets`: how many targets the input held (after filters).
  void print(FILE* out, uint64_t targets, double seconds, uint64_t handshakes) const;
  uint64_t records() const { return records_; }
  uint64_t count(const std::string& verdict) const;

 private:
  uint64_t records_ = 0;
  uint64_t clean_ = 0, intercepted_ = 0, blocked_ = 0, unreachable_ = 0;
  std::set<std::string> intercepted_targets_;
  std::set<std::string> reachable_targets_;
};

}  // namespace mw::cli
