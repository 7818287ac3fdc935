// A lab of the test's own, brought up from a topology and taken down (its
// namespaces, device and servers) when the object dies, also when the test
// fails. Needs root; tests skip without it.
#pragma once

#include "support/support.hpp"

#include <string>
#include <vector>

namespace mw::test {

class LabSession {
 public:
  // `topology`: lab.toml without its name line. `letter` starts the lab's name
  // (then this process's pid), one scripts/test's safety net knows.
  explicit LabSession(const std::string& topology, char letter = 'x');
  ~LabSession();
  LabSession(const LabSession&) = delete;
  LabSession& operator=(const LabSession&) = delete;

  bool up() const { return up_; }
  const std::string& log() const { return log_; }
  const std::string& name() const { return name_; }
  TempDir& dir() { return dir_; }
  // The root the lab's servers chain to (scan and trace take it as --ca-file).
  std::string ca() const { return "/run/mitmwatch-lab/" + name_ + "/public-root.pem"; }
  // `mitmwatch ARGS...` as run from a vantage: the arguments for run_mitmwatch or spawn_mitmwatch.
  std::vector<std::string> in_args(const std::string& vantage, const std::vector<std::string>& args) const;
  RunResult in(const std::string& vantage, const std::vector<std::string>& args,
               std::chrono::seconds limit = std::chrono::seconds(180)) const;

 private:
  TempDir dir_;
  std::string name_;
  bool up_ = false;
  std::string log_;
};

}  // namespace mw::test
