#include "support/support.hpp"

#include "certs/x509.hpp"
#include "net/address.hpp"

#include <cerrno>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace mw::test {

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() / ("mwtest-" + std::to_string(getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<nlohmann::json> parse_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_udp_pcap(const std::string& path, const std::vector<UdpFrame>& frames) {
  std::string out;
  auto u32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };  // the file's own byte order
  auto u16 = [&](uint16_t v) { out.append(reinterpret_cast<const char*>(&v), 2); };
  u32(0xa1b2c3d4);
  u16(2);
  u16(4);
  u32(0);
  u32(0);
  u32(65535);
  u32(101);  // LINKTYPE_RAW
  uint32_t usec = 0;
  for (const auto& f : frames) {
    auto endpoint = [](const std::string& text) {
      auto colon = text.rfind(':');
      return net::Endpoint{net::IpAddress::parse(text.substr(0, colon)).value(),
                           static_cast<uint16_t>(std::stoi(text.substr(colon + 1)))};
    };
    auto src = endpoint(f.src), dst = endpoint(f.dst);
    std::vector<uint8_t> ip{0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0};
    ip.insert(ip.end(), src.ip.bytes.begin(), src.ip.bytes.begin() + 4);
    ip.insert(ip.end(), dst.ip.bytes.begin(), dst.ip.bytes.begin() + 4);
    size_t total = 20 + 8 + f.payload.size();
    ip[2] = static_cast<uint8_t>(total >> 8);
    ip[3] = static_cast<uint8_t>(total);
    uint32_t sum = 0;
    for (size_t i = 0; i < 20; i += 2) sum += static_cast<uint32_t>(ip[i] << 8 | ip[i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = static_cast<uint8_t>(~sum >> 8);
    ip[11] = static_cast<uint8_t>(~sum);
    size_t udp_length = 8 + f.payload.size();
    std::vector<uint8_t> udp{static_cast<uint8_t>(src.port >> 8), static_cast<uint8_t>(src.port),
                             static_cast<uint8_t>(dst.port >> 8), static_cast<uint8_t>(dst.port),
                             static_cast<uint8_t>(udp_length >> 8), static_cast<uint8_t>(udp_length), 0, 0};
    usec += 1000;
    u32(1796400000);
    u32(usec);
    u32(static_cast<uint32_t>(total));
    u32(static_cast<uint32_t>(total));
    out.append(ip.begin(), ip.end());
    out.append(udp.begin(), udp.end());
    out.append(f.payload.begin(), f.payload.end());
  }
  write_file(path, out);
}

std::vector<uint8_t> read_hex_file(const std::string& path) {
  std::string digits;
  for (char c : read_file(path))
    if (std::isxdigit(static_cast<unsigned char>(c))) digits.push_back(c);
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < digits.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(line);
  return lines;
}

void write_pem(const std::string& path, const std::vector<X509*>& certs) {
  std::string pem;
  for (X509* c : certs) pem += certs::to_pem(c);
  write_file(path, pem);
}

namespace {

std::vector<char*> argv_of(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(MW_BINARY));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  return argv;
}

// Forks build/mitmwatch with stdin, stdout and stderr from these paths.
pid_t spawn_with(const std::vector<std::string>& args, const std::string& in_path, const std::string& out_path,
                 const std::string& err_path) {
  auto argv = argv_of(args);
  pid_t pid = fork();
  if (pid == 0) {
    int in = open(in_path.c_str(), O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = err_path == out_path ? out : open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    execv(MW_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

RunResult run_mitmwatch(const std::vector<std::string>& args, const std::string& input, std::chrono::seconds limit) {
  TempDir dir;
  std::string in_path = dir.file("stdin"), out_path = dir.file("stdout"), err_path = dir.file("stderr");
  write_file(in_path, input);
  pid_t pid = spawn_with(args, in_path, out_path, err_path);
  RunResult r;
  auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  rusage usage{};
  for (;;) {
    pid_t done = wait4(pid, &status, WNOHANG, &usage);
    if (done == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      wait4(pid, &status, 0, &usage);
      r.err = "test harness: killed after the time limit\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  r.max_rss_kb = usage.ru_maxrss;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  r.out = read_file(out_path);
  r.err += read_file(err_path);
  return r;
}

std::string run_on_terminal(const std::vector<std::string>& args, std::chrono::seconds limit) {
  int master = -1;
  auto argv = argv_of(args);
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  if (pid == 0) {
    execv(MW_BINARY, argv.data());
    _exit(127);
  }
  std::string screen;
  auto deadline = std::chrono::steady_clock::now() + limit;
  fcntl(master, F_SETFL, O_NONBLOCK);
  for (;;) {
    char buf[4096];
    ssize_t n = read(master, buf, sizeof buf);
    if (n > 0) {
      screen.append(buf, static_cast<size_t>(n));
      continue;
    }
    int status = 0;
    if (n < 0 && errno == EAGAIN) {
      if (waitpid(pid, &status, WNOHANG) == pid) break;
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    waitpid(pid, &status, 0);  // EIO: the child closed the terminal
    break;
  }
  close(master);
  return screen;
}

namespace {
std::vector<std::string> chromium_argv(const std::string& url, const std::vector<std::string>& extra,
                                       const std::string& profile) {
  std::vector<std::string> argv{"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                                "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + profile};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  return argv;
}

pid_t spawn_argv(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path) {
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);  // its own group: Chromium's helpers go with it
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = err_path == out_path ? out : open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}
}  // namespace

RunResult run_chromium(const std::string& url, const std::vector<std::string>& extra, std::chrono::seconds limit,
                       const std::vector<std::string>& prefix) {
  TempDir dir;
  auto argv = prefix;
  auto chromium = chromium_argv(url, extra, dir.file("profile"));
  argv.insert(argv.end(), chromium.begin(), chromium.end());
  pid_t pid = spawn_argv(argv, dir.file("stdout"), dir.file("stderr"));
  RunResult r;
  auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.err = "test harness: killed after the time limit\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(-pid, SIGKILL);  // helpers that outlived it
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  r.out = read_file(dir.file("stdout"));
  r.err += read_file(dir.file("stderr"));
  return r;
}

int spawn_chromium(const std::string& url, const std::vector<std::string>& extra, const std::string& log) {
  return spawn_argv(chromium_argv(url, extra, log + ".profile"), log, log);
}

int spawn_mitmwatch(const std::vector<std::string>& args, const std::string& out_path) {
  return spawn_with(args, "/dev/null", out_path, out_path);
}

tls::Observation observed(const certs::ServedChain& chain, const std::string& sni, const tls::TrustStore& trust,
                          const certs::InterceptorRegistry* registry) {
  tls::Observation obs;
  obs.sni = sni;
  obs.tls_version = "TLSv1.3";
  obs.chain.push_back(certs::to_der(chain.leaf.get()));
  for (const auto& c : chain.intermediates) obs.chain.push_back(certs::to_der(c.get()));
  if (registry) {
    tls::assess(obs, trust, *registry);
  } else {
    tls::assess(obs, trust, certs::InterceptorRegistry::builtin());
  }
  return obs;
}

tls::Observation failed(tls::ProbeError error, const std::string& sni, int alert) {
  tls::Observation obs;
  obs.sni = sni;
  obs.error = error;
  obs.alert = alert;
  return obs;
}

}  // namespace mw::test

namespace mw::test {

size_t kill_nine_after_lines(const std::vector<std::string>& args, const std::string& watched, size_t lines,
                             const std::string& log_path) {
  int pid = spawn_mitmwatch(args, log_path);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (read_lines(watched).size() < lines && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return read_lines(watched).size();
}

}  // namespace mw::test
