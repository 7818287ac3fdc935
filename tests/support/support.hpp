// Helpers shared by the tests: temporary directories, PEM files, running the
// mitmwatch binary as a subprocess, and observations built from real chains.
#pragma once

#include "certs/issue.hpp"
#include "tls/observation.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace mw::test {

// A fresh directory, removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Each non-empty line of JSON Lines text, parsed (throws on a bad line).
std::vector<nlohmann::json> parse_lines(const std::string& text);

void write_file(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);
std::vector<std::string> read_lines(const std::string& path);
// The bytes a hex text file spells (whitespace ignored): the shared 2019 ClientHellos.
std::vector<uint8_t> read_hex_file(const std::string& path);
void write_pem(const std::string& path, const std::vector<X509*>& certs);

// A classic pcap file (LINKTYPE_RAW) of IPv4 UDP datagrams, one frame each,
// a millisecond apart: captures of QUIC for tshark and `mitmwatch pcap`.
struct UdpFrame {
  std::string src, dst;  // "a.b.c.d:port"
  std::vector<uint8_t> payload;
};
void write_udp_pcap(const std::string& path, const std::vector<UdpFrame>& frames);

struct RunResult {
  int exit_code = -1;  // -signal when killed
  std::string out;
  std::string err;
  long max_rss_kb = 0;  // the process's peak resident memory (wait4)
};

// Runs build/mitmwatch with args (stdin from `input`), bounded by `limit`.
RunResult run_mitmwatch(const std::vector<std::string>& args, const std::string& input = "",
                        std::chrono::seconds limit = std::chrono::seconds(60));

// Runs build/mitmwatch with stderr (and stdout) on a pseudo-terminal; returns what it drew.
std::string run_on_terminal(const std::vector<std::string>& args,
                            std::chrono::seconds limit = std::chrono::seconds(60));

// Debian's Chromium, headless, with the flags a closed machine needs (no
// background networking, a fresh profile), loading `url` and printing its DOM:
// what it returns. `extra` flags go before the URL; `prefix` runs it through
// another command (e.g. `ip netns exec NS`). Killed after `limit`.
RunResult run_chromium(const std::string& url, const std::vector<std::string>& extra,
                       std::chrono::seconds limit = std::chrono::seconds(40),
                       const std::vector<std::string>& prefix = {});
// Starts Chromium the same way in the background (stdout and stderr to `log`);
// its pid, which is also its process group's: kill(-pid, SIGKILL) ends it all.
int spawn_chromium(const std::string& url, const std::vector<std::string>& extra, const std::string& log);

// Starts build/mitmwatch in the background with stdout/stderr to files; returns its pid.
int spawn_mitmwatch(const std::vector<std::string>& args, const std::string& out_path);
// Runs `args` in the background until `watched` holds `lines` lines (or 30 s
// pass), then kill -9; the lines it holds then.
size_t kill_nine_after_lines(const std::vector<std::string>& args, const std::string& watched, size_t lines,
                             const std::string& log_path);

// An observation of a finished handshake that presented `chain`, assessed
// against `trust` (and the built-in registry unless one is given).
tls::Observation observed(const certs::ServedChain& chain, const std::string& sni, const tls::TrustStore& trust,
                          const certs::InterceptorRegistry* registry = nullptr);
tls::Observation failed(tls::ProbeError error, const std::string& sni, int alert = -1);

}  // namespace mw::test
