// The site-side alarm in the lab, as root: a site (a backend behind
// `mitmwatch fpserver --upstream`) sits behind the interception device, and a
// real browser (Debian's Chromium) visits it from the outside vantage. For a
// trigger name the device re-originates the connection with its own hello and
// the backend hears `intercepted`; for another name the browser's own hello
// reaches the site and fits its User-Agent: `ok`; curl claiming to be Chrome
// gets `mismatch`. Skipped when not root.
#include "certs/issue.hpp"
#include "certs/x509.hpp"
#include "support/lab_session.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

using namespace mw;

namespace {

// The device reassembles TCP segments: Chromium's post-quantum ClientHello
// (about 1.8 KB) spans two of them, and a device that did not would let it pass.
constexpr const char* kTopology = R"(
routers = 4
device_after = 2
[[vantages]]
name = "outside"
attach = 1
[[prefixes]]
name = "core"
cidr = "10.71.0.0/24"
servers = 2
untrusted = 0
attach = 4
via_device = true
[device]
reassemble = ["segments"]
)";

const std::string kChromeUa =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

// A process in the site's namespace, stopped (SIGTERM, then waited for) with the object.
class SiteProcess {
 public:
  explicit SiteProcess(std::vector<std::string> args) {
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      _exit(127);
    }
  }
  ~SiteProcess() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }

 private:
  pid_t pid_ = -1;
};

// The verdict the backend heard, from the JSON page it answered.
std::string heard(const std::string& page) {
  auto at = page.find("\"X-Mitmwatch-Verdict\": \"");
  if (at == std::string::npos) return "";
  at += 24;
  return page.substr(at, page.find("\", \"", at) - at);
}

}  // namespace

TEST(AlarmLabTest, TheSiteHearsInterceptedThroughTheDeviceOkAroundItAndMismatchFromCurl) {
  if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  test::LabSession lab(kTopology);
  ASSERT_TRUE(lab.up()) << lab.log();
  std::string state = "/run/mitmwatch-lab/" + lab.name();
  // A certificate the device trusts (the lab's public CA), for a trigger name and another.
  auto cert = certs::read_pem_file(state + "/public-ca.pem");
  auto key = certs::read_key_pem_file(state + "/public-ca.key");
  ASSERT_TRUE(cert && key);
  certs::Authority ca{std::move(cert->front()), std::move(*key)};
  auto served = certs::make_leaf(ca, {"facebook.com", "example.org"}, {&ca});
  test::write_pem(lab.dir().file("site.pem"), {served.leaf.get(), ca.cert.get()});
  test::write_file(lab.dir().file("site.key"), certs::key_to_pem(served.key.get()));
  std::string ns = "mw" + lab.name() + "-score";
  // 10.71.0.200: in the core prefix (behind the device from outside), no lab server's.
  SiteProcess backend({"ip", "netns", "exec", ns, "python3", std::string(MW_SOURCE_DIR) + "/tests/lab/echo_backend.py",
                       "127.0.0.1", "8080"});
  SiteProcess front({"ip", "netns", "exec", ns, MW_BINARY, "fpserver", "-q", "--listen", "10.71.0.200:443", "--cert",
                     lab.dir().file("site.pem"), "--key", lab.dir().file("site.key"), "--upstream",
                     "http://127.0.0.1:8080", "-o", lab.dir().file("site.jsonl")});
  std::this_thread::sleep_for(std::chrono::milliseconds(800));

  std::vector<std::string> in_outside{MW_BINARY, "lab", "exec", "--name", lab.name(), "outside", "--"};
  auto visit = [&](const std::string& host) {
    auto r = test::run_chromium("https://" + host + "/account",
                                {"--ignore-certificate-errors", "--host-resolver-rules=MAP " + host + " 10.71.0.200",
                                 "--dump-dom"},
                                std::chrono::seconds(60), in_outside);
    return heard(r.out) + (heard(r.out).empty() ? " [page: " + r.out.substr(0, 300) + " | " + r.err.substr(0, 300) + "]" : "");
  };
  auto through = visit("facebook.com");
  EXPECT_EQ(through.rfind("intercepted; reason=\\\"the hello is mitmwatch lab interception device's own", 0), 0u)
      << through;
  auto around = visit("example.org");
  EXPECT_EQ(around.rfind("ok; reason=\\\"t13d", 0), 0u) << around;
  EXPECT_NE(around.find("fits chromium"), std::string::npos) << around;

  auto r = test::run_mitmwatch({"lab", "exec", "--name", lab.name(), "outside", "--", "curl", "-sk", "--max-time", "10",
                                "--resolve", "example.org:443:10.71.0.200", "-A", kChromeUa, "https://example.org/"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto from_curl = heard(r.out);
  EXPECT_EQ(from_curl.rfind("mismatch; reason=\\\"the User-Agent claims chromium", 0), 0u) << r.out;
}
