#include "cli/progress.hpp"

#include <gtest/gtest.h>

using mw::cli::ProgressBar;

TEST(Progress, RendersDoneTotalRateAndEta) {
  auto line = ProgressBar::render(50, 100, 10.0, "targets", "3 in flight", 10);
  EXPECT_EQ(line, "[#####.....] 50/100 targets 10.0/s ETA 0m05s 3 in flight");
  EXPECT_EQ(ProgressBar::render(7200, 7200 * 3, 1.0, "targets", "", 4),
            "[#...] 7200/21600 targets 1.0/s ETA 4h00m");
  EXPECT_EQ(ProgressBar::render(5, std::nullopt, 2.5, "targets", ""), "5 targets 2.5/s");
}
