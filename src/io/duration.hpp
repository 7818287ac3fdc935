// Durations as people write them on a command line or in a config:
// "90", "90s", "10m", "1h30m", "2.5s", "250ms"; and instants as they read them.
#pragma once

#include <tl/expected.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace mw::io {

// Seconds; a bare number is seconds. Errors name the text.
tl::expected<std::chrono::milliseconds, std::string> parse_duration(std::string_view text);
std::string format_duration(std::chrono::milliseconds d);
// Unix milliseconds as UTC: "2026-12-04T21:12:47Z" (`separator` between date and time).
std::string utc_time(int64_t unix_ms, char separator = 'T');

}  // namespace mw::io
