// `mitmwatch demo`: local TLS servers on 127.77.0.0/16, a quarter of them
// behind a stand-in interception CA that forges certificates on trigger SNIs
// the way the 2019 Kazakh device did, then a scan of them all.
#include "certs/x509.hpp"
#include "cli/progress.hpp"
#include "cli/scan_summary.hpp"
#include "commands.hpp"
#include "target_input.hpp"
#include "drivers/scan.hpp"
#include "io/jsonl.hpp"
#include "lab/stand_in.hpp"

#include <fmt/format.h>

#include <unistd.h>

namespace mw::app {
namespace {

struct DemoFlags : OutputFlags {
  DemoFlags() { output = "mitmwatch-demo.jsonl"; }
  int servers = 40;
  std::vector<std::string> snis = {"facebook.com", "google.com"};
};

enum class Kind { clean, intercepted, reset, alert, self_signed, down };

Kind kind_of(int i, int n) {
  if (i == n - 1) return Kind::down;
  if (i == n - 2) return Kind::reset;
  if (i == n - 3) return Kind::alert;
  if (i == n - 4) return Kind::self_signed;
  return i % 4 == 1 ? Kind::intercepted : Kind::clean;
}

void print_leaf_pair(const nlohmann::ordered_json& record) {
  const nlohmann::ordered_json* control = nullptr;
  const nlohmann::ordered_json* forged = nullptr;
  for (const auto& a : record["attempts"]) {
    if (a["role"] == "control" && !control) control = &a;
    if (a["role"] == "test" && !a["leaf"].is_null() && !forged) forged = &a;
  }
  if (!control || !forged) return;
  auto describe = [](const nlohmann::ordered_json& attempt) {
    auto der = certs::unbase64(attempt["chain"][0].get<std::string>());
    auto cert = certs::from_der(*der);
    X509* c = cert->get();
    EVP_PKEY* key = X509_get0_pubkey(c);
    std::string keydesc = fmt::format("{} {} bits", EVP_PKEY_get0_type_name(key), EVP_PKEY_get_bits(key));
    BIGNUM* e = nullptr;
    if (EVP_PKEY_get_bn_param(key, "e", &e) == 1) {
      keydesc += fmt::format(", e={}", BN_get_word(e));
      BN_free(e);
    }
    auto t = [](const ASN1_TIME* at) {
      struct tm tm {};
      ASN1_TIME_to_tm(at, &tm);
      char buf[32];
      strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
      return std::string(buf);
    };
    const ASN1_INTEGER* serial = X509_get0_serialNumber(c);
    return std::vector<std::string>{
        certs::subject_text(c), certs::issuer_text(c), keydesc, t(X509_get0_notBefore(c)), t(X509_get0_notAfter(c)),
        certs::hex(ASN1_STRING_get0_data(serial), static_cast<size_t>(ASN1_STRING_length(serial))),
        std::to_string(X509_get_ext_count(c))};
  };
  auto real = describe(*control), fake = describe(*forged);
  const char* rows[] = {"subject", "issuer", "key", "notBefore", "notAfter", "serial", "extensions"};
  fmt::print("\nOne interception, {} with SNI {}:\n", record["target"].get<std::string>(),
             record["sni"].get<std::string>());
  fmt::print("  {:<11} {:<44} {}\n", "", "real (control handshake)", "forged (trigger SNI)");
  for (size_t i = 0; i < 7; ++i) fmt::print("  {:<11} {:<44} {}\n", rows[i], real[i], fake[i]);
}

int run_demo(const DemoFlags& f) {
  if (f.servers < 8 || f.servers > 5000) throw UsageError("--servers must be 8..5000");
  fmt::print(stderr, "demo: making certificate authorities and {} sites...\n", f.servers);
  lab::StandInWorld world;
  std::vector<lab::Listener> listeners;
  std::vector<net::Endpoint> down;
  int expect_intercepted = 0, expect_blocked = 0;
  for (int i = 0; i < f.servers; ++i) {
    net::Endpoint at{*net::IpAddress::parse(fmt::format("127.77.{}.{}", i / 250, i % 250 + 1)), 0};
    std::string name = fmt::format("site{}.lab.example", i);
    switch (kind_of(i, f.servers)) {
      case Kind::clean: listeners.push_back({at, world.clean_site(name)}); break;
      case Kind::intercepted:
        listeners.push_back({at, world.intercepted_site(name)});
        ++expect_intercepted;
        break;
      case Kind::reset: listeners.push_back({at, world.blocking_site(name, lab::SniAction::reset)}); ++expect_blocked; break;
      case Kind::alert: listeners.push_back({at, world.blocking_site(name, lab::SniAction::alert)}); ++expect_blocked; break;
      case Kind::self_signed: listeners.push_back({at, world.self_signed_site(name)}); break;
      case Kind::down: at.port = 9; down.push_back(at); break;  // discard port, nothing listens
    }
  }
  auto server = lab::TlsServer::start(std::move(listeners), {});
  if (!server) throw std::runtime_error("starting demo servers: " + server.error());
  std::vector<net::TargetSpec> specs;
  for (const auto& e : (*server)->endpoints()) specs.push_back({{e.ip, e.ip.bits()}, e.port, e.to_string()});
  for (const auto& e : down) specs.push_back({{e.ip, e.ip.bits()}, e.port, e.to_string()});

  auto trust = tls::TrustStore::empty();
  trust.add(world.public_root().cert.get());
  auto registry = certs::InterceptorRegistry::builtin();  // the stand-in CA is NOT in it
  auto profile = tls::ClientProfile::browser_like();
  if (!profile) throw std::runtime_error(profile.error());
  drivers::ScanOptions options;
  options.test_snis = f.snis;
  options.control_sni = "xkqjwzrtplvm.example.com";
  // Generous: only a machine under heavy load comes near them (the down site
  // refuses at once), and a late answer must not change the demo's figures.
  options.connect_timeout = std::chrono::milliseconds(5000);
  options.handshake_timeout = std::chrono::milliseconds(10000);

  auto out = store::RecordSink::open(sink_options(f, "scan"));  // the demo's records are a scan's
  if (!out) throw std::runtime_error(out.error());
  net::TargetFilter filter;
  filter.allow_reserved = true;
  net::TargetStream stream(specs, filter);
  cli::ScanSummary summary;
  nlohmann::ordered_json example;
  cli::ProgressBar bar(stderr, isatty(STDERR_FILENO), specs.size(), "targets");
  drivers::ScanHooks hooks;
  hooks.on_record = [&](records::ScanRecord&& r) {
    auto json = records::to_json(r);
    if (auto ok = out->write(json); !ok) throw std::runtime_error(ok.error());
    if (json["verdict"] == "intercepted" && example.is_null()) example = json;
    summary.add(json);
  };
  hooks.on_progress = [&](const drivers::ScanStats& s) { bar.update(s.targets_done); };
  auto t0 = std::chrono::steady_clock::now();
  fmt::print(stderr, "demo: scanning {} targets with SNIs {} and a control\n", specs.size(), fmt::join(f.snis, ","));
  auto stats = drivers::Scanner(options, *profile, trust, registry).run(stream, hooks);
  bar.finish();
  (*server)->stop();
  if (auto ok = out->finish(true); !ok) throw std::runtime_error(ok.error());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summary.print(stdout, stats.targets, secs, stats.handshakes);
  if (!example.is_null()) print_leaf_pair(example);
  size_t n_snis = f.snis.size();
  bool as_built = summary.count("intercepted") == expect_intercepted * n_snis &&
                  summary.count("blocked") == expect_blocked * n_snis && summary.count("unreachable") == n_snis;
  fmt::print("\nThe demo built {} intercepting and {} blocking sites and one that is down; the scan found {}.\n",
             expect_intercepted, expect_blocked, as_built ? "exactly those" : "something else (see the records)");
  fmt::print("Records: {}   try: jq -c 'select(.verdict==\"intercepted\") | [.target,.sni,.reasons]' {}\n",
             f.output, f.output);
  return as_built ? cli::kExitOk : cli::kExitFailure;
}

}  // namespace

Action add_demo_command(CLI::App& app) {
  auto f = std::make_shared<DemoFlags>();
  app.footer(
      "Runs entirely on 127.77.0.0/16: needs no network and no privileges.\n"
      "The stand-in interception CA is deliberately absent from the registry of\n"
      "known interceptors, so the forgeries are found by comparison alone.");
  app.add_option("--servers", f->servers, "How many local sites")->capture_default_str();
  app.add_option("-o,--output", f->output, "Where to write the scan records")->capture_default_str();
  app.add_option("--sni", f->snis, "Test SNIs")->delimiter(',')->allow_extra_args(false)->capture_default_str();
  add_store_options(app, *f);
  return [f] { return run_demo(*f); };
}

}  // namespace mw::app
