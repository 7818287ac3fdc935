#include "cli/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

namespace mw::cli {

int run_child(const std::vector<std::string>& argv, const ChildOptions& o) {
  if (argv.empty()) return -1;
  int in_pipe[2] = {-1, -1};
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return -1;
  int out = -1;
  if (!o.output.empty()) {
    out = open(o.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
      close(in_pipe[0]);
      close(in_pipe[1]);
      return -1;
    }
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    if (out >= 0) close(out);
    return -1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took
    dup2(in_pipe[0], STDIN_FILENO);
    if (out >= 0) {
      dup2(out, STDOUT_FILENO);
      dup2(out, STDERR_FILENO);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in_pipe[0]);
  if (out >= 0) close(out);
  std::signal(SIGPIPE, SIG_IGN);
  size_t off = 0;
  while (off < o.input.size()) {
    ssize_t n = write(in_pipe[1], o.input.data() + off, o.input.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  close(in_pipe[1]);
  auto deadline = std::chrono::steady_clock::now() + o.limit;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline || (o.keep_going && !o.keep_going())) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

std::vector<std::string> trace_args_of(const std::vector<std::string>& scan_args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < scan_args.size(); ++i) {
    const auto& a = scan_args[i];
    if (a == "--allow-private") out.push_back(a);
    if ((a == "--ca-file" || a == "--ca-dir" || a == "--control" || a == "--interceptors") && i + 1 < scan_args.size()) {
      out.push_back(a);
      out.push_back(scan_args[i + 1]);
    }
  }
  return out;
}

}  // namespace mw::cli
