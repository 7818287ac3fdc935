#include "lab/schedule.hpp"

#include "io/duration.hpp"
#include "lab/lab.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace mw::lab {

tl::expected<ScheduleStep, std::string> parse_schedule_step(const std::string& text) {
  auto colon = text.find(':');
  if (colon == std::string::npos)
    return tl::unexpected("schedule step '" + text + "': not TIME:STATE (e.g. 20s:off, 0s:on, 40s:0.5)");
  auto at = io::parse_duration(std::string_view(text).substr(0, colon));
  if (!at) return tl::unexpected("schedule step '" + text + "': " + at.error());
  ScheduleStep step;
  step.at_ms = at->count();
  std::string state = text.substr(colon + 1);
  if (state == "on") return step;
  if (state == "off") {
    step.on = false;
    return step;
  }
  try {
    size_t used = 0;
    double f = std::stod(state, &used);
    if (used == state.size() && f >= 0 && f <= 1) {
      step.fraction = f;
      step.on = f > 0;
      return step;
    }
  } catch (const std::exception&) {
  }
  return tl::unexpected("schedule step '" + text + "': state must be on, off or a fraction 0..1");
}

tl::expected<DeviceSchedule, std::string> parse_schedule(const std::vector<std::string>& steps, int64_t start) {
  DeviceSchedule s;
  s.start_unix_ms = start;
  for (const auto& t : steps) {
    auto step = parse_schedule_step(t);
    if (!step) return tl::unexpected(step.error());
    s.steps.push_back(*step);
  }
  if (s.steps.empty()) return tl::unexpected(std::string("a schedule needs at least one step"));
  std::stable_sort(s.steps.begin(), s.steps.end(), [](auto& a, auto& b) { return a.at_ms < b.at_ms; });
  return s;
}

std::optional<ScheduleStep> step_at(const DeviceSchedule& s, int64_t now) {
  std::optional<ScheduleStep> current;
  for (const auto& step : s.steps)
    if (s.start_unix_ms + step.at_ms <= now) current = step;
  return current;
}

nlohmann::json to_json(const DeviceSchedule& s) {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& st : s.steps) steps.push_back({{"at_ms", st.at_ms}, {"on", st.on}, {"fraction", st.fraction}});
  return {{"start_unix_ms", s.start_unix_ms}, {"steps", steps}};
}

tl::expected<DeviceSchedule, std::string> schedule_from_json(const nlohmann::json& j) {
  try {
    DeviceSchedule s;
    s.start_unix_ms = j.at("start_unix_ms").get<int64_t>();
    for (const auto& st : j.at("steps"))
      s.steps.push_back({st.at("at_ms").get<int64_t>(), st.at("on").get<bool>(), st.at("fraction").get<double>()});
    return s;
  } catch (const std::exception& e) {
    return tl::unexpected(std::string("device schedule: ") + e.what());
  }
}

tl::expected<void, std::string> write_device_schedule(const std::string& lab_name, const DeviceSchedule& s) {
  namespace fs = std::filesystem;
  fs::path dir = state_dir(lab_name);
  {
    std::ofstream out(dir / "device-schedule.json.tmp");
    out << to_json(s).dump() << "\n";
    if (!out) return tl::unexpected((dir / "device-schedule.json").string() + ": cannot write");
  }
  std::error_code ec;
  fs::rename(dir / "device-schedule.json.tmp", dir / "device-schedule.json", ec);
  if (ec) return tl::unexpected((dir / "device-schedule.json").string() + ": " + ec.message());
  return {};
}

void clear_device_schedule(const std::string& lab_name) {
  std::error_code ec;
  std::filesystem::remove(std::filesystem::path(state_dir(lab_name)) / "device-schedule.json", ec);
}

}  // namespace mw::lab
