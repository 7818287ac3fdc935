#include "support/lab_session.hpp"

#include <unistd.h>

namespace mw::test {

LabSession::LabSession(const std::string& topology, char letter)
    : name_(std::string(1, letter) + std::to_string(getpid() % 100000)) {
  write_file(dir_.file("lab.toml"), "name = \"" + name_ + "\"\n" + topology);
  auto r = run_mitmwatch({"lab", "up", "--config", dir_.file("lab.toml")}, "", std::chrono::seconds(120));
  up_ = r.exit_code == 0;
  log_ = r.err;
}

LabSession::~LabSession() { run_mitmwatch({"lab", "down", "--name", name_}); }

std::vector<std::string> LabSession::in_args(const std::string& vantage, const std::vector<std::string>& args) const {
  std::vector<std::string> full{"lab", "exec", "--name", name_, vantage, "--", MW_BINARY};
  full.insert(full.end(), args.begin(), args.end());
  return full;
}

RunResult LabSession::in(const std::string& vantage, const std::vector<std::string>& args,
                         std::chrono::seconds limit) const {
  return run_mitmwatch(in_args(vantage, args), "", limit);
}

}  // namespace mw::test
