#include "report/svg.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <ctime>

namespace mw::report {
namespace {
constexpr const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"};

std::string clock_label(int64_t ms, int64_t span_ms) {
  auto t = fmt::gmtime(static_cast<time_t>(ms / 1000));
  return span_ms > 2 * 86'400'000 ? fmt::format("{:%m-%d %H:%M}", t) : fmt::format("{:%H:%M:%S}", t);
}
}  // namespace

std::string time_series_svg(const std::vector<Line>& lines, const std::vector<Marker>& markers,
                            const std::string& title) {
  const int w = 760, h = 300, left = 50, right = 45, top = 30, bottom = 40;
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (const auto& l : lines)
    for (const auto& [t, v] : l.points) {
      lo = std::min(lo, t);
      hi = std::max(hi, t);
    }
  for (const auto& m : markers) {
    lo = std::min(lo, m.at_ms);
    hi = std::max(hi, m.at_ms);
  }
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"11\" role=\"img\"><title>{}</title>"
      "<text x=\"{}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>",
      w, h, w, h, xml_escape(title), left, xml_escape(title));
  if (lo == INT64_MAX) return svg + fmt::format("<text x=\"{}\" y=\"{}\">no rounds stored</text></svg>", left, h / 2);
  if (hi == lo) hi = lo + 1;
  double pw = w - left - right, ph = h - top - bottom;
  auto x = [&](int64_t t) { return left + pw * static_cast<double>(t - lo) / static_cast<double>(hi - lo); };
  auto y = [&](double v) { return top + ph * (1 - v); };
  for (int i = 0; i <= 4; ++i) {
    double v = i / 4.0;
    svg += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.0f} %</text>",
                       left, w - right, y(v), y(v), left - 4, y(v) + 4, v * 100);
  }
  for (int i = 0; i <= 4; ++i) {
    int64_t t = lo + (hi - lo) * i / 4;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>", x(t), h - bottom + 16,
                       clock_label(t, hi - lo));
  }
  for (const auto& m : markers)
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"{3}\" stroke-dasharray=\"4 3\">"
        "<title>{4}</title></line>",
        x(m.at_ms), top, h - bottom, m.stop ? "#d62728" : "#1f77b4", xml_escape(m.label));
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    const char* color = kColors[i % std::size(kColors)];
    std::string path;
    for (const auto& [t, v] : l.points) path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "M" : " L", x(t), y(v));
    svg += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>", path, color);
    for (const auto& [t, v] : l.points)
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"><title>{} {:.1f} %</title></circle>",
                         x(t), y(v), color, xml_escape(l.name), v * 100);
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
                       left + 10 + 140 * static_cast<int>(i), h - 14, color, left + 24 + 140 * static_cast<int>(i),
                       h - 5, xml_escape(l.name));
  }
  return svg + "</svg>";
}

std::string bar_chart_svg(const std::vector<std::pair<std::string, double>>& bars, const std::string& title,
                          const std::string& unit) {
  const int w = 760, row = 20, top = 30, label_w = 330;
  int h = top + row * static_cast<int>(std::max<size_t>(bars.size(), 1)) + 10;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"11\" role=\"img\"><title>{}</title>"
      "<text x=\"4\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>",
      w, h, w, h, xml_escape(title), xml_escape(title));
  if (bars.empty()) return svg + "<text x=\"4\" y=\"44\">none stored</text></svg>";
  double max = 0;
  for (const auto& b : bars) max = std::max(max, b.second);
  if (max <= 0) max = 1;
  for (size_t i = 0; i < bars.size(); ++i) {
    int yy = top + row * static_cast<int>(i);
    double bw = (w - label_w - 80) * bars[i].second / max;
    std::string label = bars[i].first.size() > 52 ? bars[i].first.substr(0, 50) + "…" : bars[i].first;
    svg += fmt::format(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"14\" "
        "fill=\"#1f77b4\"><title>{}</title></rect><text x=\"{:.1f}\" y=\"{}\">{}{}</text>",
        label_w - 6, yy + 11, xml_escape(label), label_w, yy, bw, xml_escape(bars[i].first), label_w + bw + 4, yy + 11,
        bars[i].second == static_cast<int64_t>(bars[i].second) ? fmt::format("{}", static_cast<int64_t>(bars[i].second))
                                                                  : fmt::format("{:.1f}", bars[i].second),
        unit);
  }
  return svg + "</svg>";
}

}  // namespace mw::report
