#include "cli/progress.hpp"

#include <fmt/format.h>

namespace mw::cli {

ProgressBar::ProgressBar(FILE* out, bool enabled, std::optional<uint64_t> total, std::string unit)
    : out_(out), enabled_(enabled), total_(total), unit_(std::move(unit)) {}

std::string ProgressBar::render(uint64_t done, std::optional<uint64_t> total, double rate, const std::string& unit,
                                const std::string& extra, int width) {
  std::string line;
  if (total && *total > 0) {
    double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(*total));
    int filled = static_cast<int>(frac * width);
    line = "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.') +
           "] " + fmt::format("{}/{} {}", done, *total, unit);
  } else {
    line = fmt::format("{} {}", done, unit);
  }
  line += fmt::format(" {:.1f}/s", rate);
  if (total && rate > 0 && done <= *total) {
    auto eta = static_cast<uint64_t>(static_cast<double>(*total - done) / rate);
    line += eta >= 3600 ? fmt::format(" ETA {}h{:02}m", eta / 3600, eta % 3600 / 60)
                        : fmt::format(" ETA {}m{:02}s", eta / 60, eta % 60);
  }
  if (!extra.empty()) line += " " + extra;
  return line;
}

void ProgressBar::update(uint64_t done, const std::string& extra) {
  if (!enabled_) return;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  std::fprintf(out_, "\r\033[K%s", render(done, total_, rate, unit_, extra).c_str());
  std::fflush(out_);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (enabled_ && drawn_) {
    std::fprintf(out_, "\r\033[K");
    std::fflush(out_);
  }
}

}  // namespace mw::cli
