#include "lab/netns.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <thread>

namespace mw::lab {
namespace {

std::vector<char*> c_argv(const Argv& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// Forks argv with stdout and stderr to pipes; returns exit status and output.
tl::expected<std::pair<std::string, std::string>, std::string> execute(const Argv& argv, int* status_out) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0)
    return tl::unexpected(std::string("pipe: ") + std::strerror(errno));
  auto args = c_argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  std::string out, err;
  // Small outputs: read stdout then stderr (ip's outputs are far below a pipe's size).
  char buf[4096];
  for (int fd : {out_pipe[0], err_pipe[0]}) {
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) (fd == out_pipe[0] ? out : err).append(buf, static_cast<size_t>(n));
    close(fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  *status_out = status;
  return std::make_pair(out, err);
}

std::string joined(const Argv& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

}  // namespace

tl::expected<void, std::string> run(const Argv& argv) {
  int status = 0;
  auto r = execute(argv, &status);
  if (!r) return tl::unexpected(r.error());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string err = r->second;
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return tl::unexpected("`" + joined(argv) + "` failed" + (err.empty() ? "" : ": " + err));
  }
  return {};
}

tl::expected<void, std::string> run_in(const std::string& ns, const Argv& argv) {
  Argv full{"ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  return run(full);
}

tl::expected<std::string, std::string> capture(const Argv& argv) {
  int status = 0;
  auto r = execute(argv, &status);
  if (!r) return tl::unexpected(r.error());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return tl::unexpected("`" + joined(argv) + "` failed: " + r->second);
  return r->first;
}

std::vector<std::string> list_namespaces() {
  std::vector<std::string> out;
  auto text = capture({"ip", "netns", "list"});
  if (!text) return out;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    auto name = line.substr(0, line.find(' '));
    if (!name.empty()) out.push_back(name);
  }
  return out;
}

void delete_namespace(const std::string& ns) {
  // A namespace lives on while a process is in it: end them first.
  for (int round = 0; round < 20; ++round) {
    auto pids = capture({"ip", "netns", "pids", ns});
    if (!pids || pids->empty()) break;
    std::istringstream in(*pids);
    int pid;
    while (in >> pid) kill(pid, round == 0 ? SIGTERM : SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  (void)run({"ip", "netns", "del", ns});
}

tl::expected<int, std::string> spawn_in(const std::string& ns, const Argv& argv, const std::string& log_path) {
  Argv full{"ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  auto args = c_argv(full);
  pid_t pid = fork();
  if (pid < 0) return tl::unexpected(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    setsid();
    int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(log, 1);
    dup2(log, 2);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

}  // namespace mw::lab
