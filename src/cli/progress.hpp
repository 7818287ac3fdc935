// A one-line progress bar for long runs: done/total, rate, ETA. No packaged
// library does this (Debian has none for C++), so it is written here.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

namespace mw::cli {

class ProgressBar {
 public:
  // Draws only when `enabled` (callers pass: stderr is a TTY and not --quiet).
  ProgressBar(FILE* out, bool enabled, std::optional<uint64_t> total, std::string unit);
  void update(uint64_t done, const std::string& extra = {});
  void finish();  // clears the line

  // Pure formatting, for tests: "[#####.....] 50/100 12.0/s ETA 4s extra".
  static std::string render(uint64_t done, std::optional<uint64_t> total, double rate, const std::string& unit,
                            const std::string& extra, int width = 24);

 private:
  FILE* out_;
  bool enabled_;
  std::optional<uint64_t> total_;
  std::string unit_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool drawn_ = false;
};

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

}  // namespace mw::cli
