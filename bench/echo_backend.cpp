// A site's backend for bench/alarm-bench: answers every GET with a small page
// (keep-alive), so the benchmark measures the front in front of it.
// usage: mw-bench-backend PORT
#include <httplib.h>

#include <cstdlib>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  httplib::Server server;
  const std::string page(512, 'x');
  server.Get(".*", [&](const httplib::Request&, httplib::Response& res) { res.set_content(page, "text/html"); });
  server.set_keep_alive_max_count(1000000);
  server.set_tcp_nodelay(true);
  return server.listen("127.0.0.1", std::atoi(argv[1])) ? 0 : 1;
}
