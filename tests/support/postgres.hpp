// A real PostgreSQL server of the test's own: initdb into a fresh directory,
// `postgres` listening only on a Unix socket there (no TCP port, so tests in
// parallel never collide), stopped and removed with the object. As root the
// server runs as the `postgres` user (it refuses root). The binaries come from
// Debian's postgresql package (scripts/install-deps).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

namespace mw::test {

class PostgresServer {
 public:
  // The server, or nullptr with `why` set (no binaries, initdb failed...).
  static std::unique_ptr<PostgresServer> start(std::string& why);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Creates an empty database; the postgresql:// URL that reaches it.
  std::string create_database(const std::string& name);
  const std::string& socket_dir() const { return dir_; }

 private:
  PostgresServer() = default;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace mw::test
