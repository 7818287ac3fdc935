// Small SVG charts for the self-contained report: a time series with event
// markers and a horizontal bar chart. Hand-written: the report must be one
// file that opens anywhere without scripts, and what it draws is this little.
#pragma once

#include "io/markup.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace mw::report {

struct Line {
  std::string name;
  std::vector<std::pair<int64_t, double>> points;  // (unix ms, share 0..1)
};
struct Marker {
  int64_t at_ms;
  std::string label;
  bool stop;  // drawn red; else blue
};

std::string time_series_svg(const std::vector<Line>& lines, const std::vector<Marker>& markers,
                            const std::string& title);
std::string bar_chart_svg(const std::vector<std::pair<std::string, double>>& bars, const std::string& title,
                          const std::string& unit);
using io::xml_escape;

}  // namespace mw::report
