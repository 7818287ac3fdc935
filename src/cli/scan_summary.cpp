#include "cli/scan_summary.hpp"

#include <fmt/format.h>

namespace mw::cli {

void ScanSummary::add(const std::string& v, const std::string& target) {
  ++records_;
  if (v == "clean") ++clean_;
  else if (v == "intercepted") ++intercepted_;
  else if (v == "blocked") ++blocked_;
  else if (v == "unreachable") ++unreachable_;
  if (v == "intercepted") intercepted_targets_.insert(target);
  if (v != "unreachable") reachable_targets_.insert(target);
}

uint64_t ScanSummary::count(const std::string& v) const {
  if (v == "clean") return clean_;
  if (v == "intercepted") return intercepted_;
  if (v == "blocked") return blocked_;
  if (v == "unreachable") return unreachable_;
  return 0;
}

void ScanSummary::print(FILE* out, uint64_t targets, double seconds, uint64_t handshakes) const {
  auto pct = [](uint64_t a, uint64_t b) { return b ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0; };
  fmt::print(out, "scan: {} targets, {} records, {} handshakes this run in {:.1f} s ({:.0f}/s)\n", targets,
             records_, handshakes, seconds, seconds > 0 ? static_cast<double>(handshakes) / seconds : 0.0);
  for (const char* v : {"intercepted", "blocked", "clean", "unreachable"})
    fmt::print(out, "  {:<12} {:>8}  ({:.1f} % of records)\n", v, count(v), pct(count(v), records_));
  fmt::print(out, "intercepted: {} of {} targets ({:.1f} %); {} of {} reachable targets ({:.1f} %)\n",
             intercepted_targets_.size(), targets, pct(intercepted_targets_.size(), targets),
             intercepted_targets_.size(), reachable_targets_.size(),
             pct(intercepted_targets_.size(), reachable_targets_.size()));
}

}  // namespace mw::cli
