// mw-bench-farm: one TLS site with an ECDSA P-256 chain on every address the
// namespace owns (bind 0.0.0.0 after `ip route add local PREFIX dev lo`),
// served by several workers, until SIGTERM. Writes the root to --ca-out.
#include "certs/x509.hpp"
#include "lab/stand_in.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <unistd.h>

int main(int argc, char** argv) {
  std::string ca_out = "farm-root.pem", bind = "0.0.0.0";
  int workers = 2, port = 443;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--ca-out")) ca_out = argv[i + 1];
    else if (!std::strcmp(argv[i], "--workers")) workers = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--port")) port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--bind")) bind = argv[i + 1];
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // worker threads inherit the mask

  mw::lab::StandInWorld world;
  std::ofstream(ca_out) << mw::certs::to_pem(world.public_root().cert.get());
  mw::net::Endpoint at{*mw::net::IpAddress::parse(bind), static_cast<uint16_t>(port)};
  mw::lab::TlsServer::Options options;
  options.workers = workers;
  options.idle_timeout_ms = 30000;
  auto server = mw::lab::TlsServer::start({{at, world.clean_site("bench.example")}}, options);
  if (!server) {
    std::fprintf(stderr, "mw-bench-farm: %s\n", server.error().c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "mw-bench-farm: %llu handshakes served\n",
               static_cast<unsigned long long>((*server)->handshakes_completed()));
  return 0;
}
