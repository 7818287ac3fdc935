// A timetable for the lab's interception device, so a monitor can be tested
// against a device that stops and starts like the real one ("stopped ...
// resumed 9 hours later"). Steps are "TIME:STATE": "0s:on", "20s:off",
// "40s:0.5" (on, intercepting half the trigger flows), times from the start.
#pragma once

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mw::lab {

struct ScheduleStep {
  int64_t at_ms = 0;  // from the schedule's start
  bool on = true;
  double fraction = 1.0;
};

struct DeviceSchedule {
  int64_t start_unix_ms = 0;
  std::vector<ScheduleStep> steps;  // sorted by at_ms
};

tl::expected<ScheduleStep, std::string> parse_schedule_step(const std::string& text);
tl::expected<DeviceSchedule, std::string> parse_schedule(const std::vector<std::string>& steps, int64_t start_unix_ms);
// The step in force at `now`; none before the first step.
std::optional<ScheduleStep> step_at(const DeviceSchedule& s, int64_t now_unix_ms);

nlohmann::json to_json(const DeviceSchedule& s);
tl::expected<DeviceSchedule, std::string> schedule_from_json(const nlohmann::json& j);

// The running lab's schedule file (state dir); the device reads it four times a second.
tl::expected<void, std::string> write_device_schedule(const std::string& lab_name, const DeviceSchedule& s);
void clear_device_schedule(const std::string& lab_name);

}  // namespace mw::lab
