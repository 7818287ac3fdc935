#include "support/postgres.hpp"

#include <libpq-fe.h>
#include <pwd.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

namespace mw::test {
namespace {

namespace fs = std::filesystem;

std::string bin_dir() {
  std::string best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec))
    if (fs::exists(e.path() / "bin" / "postgres") && e.path().string() > best) best = e.path().string();
  return best.empty() ? "" : best + "/bin";
}

// Forks argv as the postgres user when we are root; its pid. Output to `log`.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  struct passwd* pw = geteuid() == 0 ? getpwnam("postgres") : nullptr;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  if (pw) {
    if (setgroups(0, nullptr) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) _exit(126);
  }
  // After the change of user, which clears it: the server dies with the test.
  prctl(PR_SET_PDEATHSIG, SIGQUIT);
  if (getppid() != parent) _exit(125);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  _exit(127);
}

std::string url_of(const std::string& dir, const std::string& db) {
  return "postgresql:///" + db + "?host=" + dir + "&user=postgres";
}

}  // namespace

std::unique_ptr<PostgresServer> PostgresServer::start(std::string& why) {
  std::string bin = bin_dir();
  if (bin.empty()) {
    why = "no PostgreSQL server under /usr/lib/postgresql (scripts/install-deps installs it)";
    return nullptr;
  }
  std::unique_ptr<PostgresServer> s(new PostgresServer());
  char tmpl[] = "/tmp/mwpg-XXXXXX";
  if (!mkdtemp(tmpl)) {
    why = "mkdtemp failed";
    return nullptr;
  }
  s->dir_ = tmpl;
  if (geteuid() == 0) {
    struct passwd* pw = getpwnam("postgres");
    if (!pw) {
      why = "running as root and there is no postgres user to run the server as";
      return nullptr;
    }
    if (chown(s->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      why = "cannot chown " + s->dir_;
      return nullptr;
    }
  }
  std::string log = s->dir_ + "/server.log";
  pid_t init = spawn({bin + "/initdb", "-D", s->dir_ + "/data", "-A", "trust", "-U", "postgres", "--no-sync", "-E",
                      "UTF8", "--locale=C"},
                     log);
  int status = 0;
  waitpid(init, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    why = "initdb failed (see " + log + ")";
    return nullptr;
  }
  // Durability is not what these tests measure: no fsync, as initdb --no-sync.
  s->pid_ = spawn({bin + "/postgres", "-D", s->dir_ + "/data", "-k", s->dir_, "-c", "listen_addresses=", "-c",
                   "fsync=off", "-c", "max_connections=50"},
                  log);
  std::string conninfo = "host=" + s->dir_ + " user=postgres dbname=postgres";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (PQping(conninfo.c_str()) != PQPING_OK) {
    if (std::chrono::steady_clock::now() > deadline || waitpid(s->pid_, &status, WNOHANG) == s->pid_) {
      why = "the server did not start (see " + log + ")";
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return s;
}

PostgresServer::~PostgresServer() {
  if (pid_ > 0) {
    kill(pid_, SIGQUIT);  // immediate shutdown: nothing here is worth a checkpoint
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

std::string PostgresServer::create_database(const std::string& name) {
  std::string conninfo = "host=" + dir_ + " user=postgres dbname=postgres";
  PGconn* c = PQconnectdb(conninfo.c_str());
  PGresult* r = PQexec(c, ("CREATE DATABASE " + name).c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string message = PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  if (!ok) throw std::runtime_error("CREATE DATABASE " + name + ": " + message);
  return url_of(dir_, name);
}

}  // namespace mw::test
