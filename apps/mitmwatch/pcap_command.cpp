// `mitmwatch pcap FILE...`: the TLS connections of capture files, with their
// fingerprints and the signs of interception they carry, as JSON Lines.
#include "certs/registry.hpp"
#include "cli/progress.hpp"
#include "commands.hpp"
#include "target_input.hpp"
#include "drivers/pcap_read.hpp"
#include "fingerprint/fingerprint_registry.hpp"
#include "io/jsonl.hpp"
#include "net/capture.hpp"
#include "records/tls_session_record.hpp"

#include <fmt/format.h>

#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <unistd.h>

namespace mw::app {
namespace {

constexpr size_t kBatch = 256, kBatchesInFlight = 4;

struct PcapFlags : OutputFlags {
  std::vector<std::string> files;
  std::string interceptors, fingerprints;
  bool raw = false;
};

int run_pcap(const PcapFlags& f) {
  // Validate everything before reading anything.
  uint64_t total_bytes = 0;
  for (const auto& path : f.files) {
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    if (ec) throw UsageError(fmt::format("{}: {}", path, ec.message()));
    if (auto readable = net::PcapFile::open(path); !readable)
      throw UsageError(readable.error() + " (not a pcap or pcapng file?)");
    total_bytes += size;
  }
  auto interceptors = f.interceptors.empty() ? certs::InterceptorRegistry::builtin()
                                             : certs::InterceptorRegistry::from_file(f.interceptors);
  if (!interceptors) throw UsageError("--interceptors " + interceptors.error());
  auto fingerprints = f.fingerprints.empty() ? fingerprint::FingerprintRegistry::builtin()
                                             : fingerprint::FingerprintRegistry::from_file(f.fingerprints);
  if (!fingerprints) throw UsageError("--fingerprints " + fingerprints.error());
  if (f.output != "-" && std::filesystem::exists(f.output) && !f.overwrite)
    throw UsageError(f.output + " exists: --overwrite replaces it");
  auto out = store::RecordSink::open(sink_options(f, "pcap"));
  if (!out) throw std::runtime_error(out.error());

  bool tty = isatty(STDERR_FILENO) && !f.quiet;
  cli::ProgressBar bar(stderr, tty, total_bytes / (1 << 20), "MiB");
  uint64_t done_bytes = 0, sessions = 0, flagged = 0;
  std::map<std::string, uint64_t> by_flag;
  std::string write_error, read_error;
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& path : f.files) {
    records::SessionContext ctx{path, &*interceptors, &*fingerprints, f.raw};
    // Records are made on other cores in batches while the file is read:
    // making them costs more than reading (fingerprints, JSON). Batches are
    // written in the order their connections ended, as one write each.
    struct Made {
      std::string lines;
      uint64_t records = 0, flagged = 0;
      std::map<std::string, uint64_t> by_flag;
    };
    std::deque<std::future<Made>> making;
    auto write_made = [&](Made m) {
      sessions += m.records;
      flagged += m.flagged;
      for (const auto& [k, n] : m.by_flag) by_flag[k] += n;
      if (m.lines.empty()) return;
      if (auto ok = out->write_lines(std::move(m.lines)); !ok && write_error.empty()) write_error = ok.error();
    };
    std::vector<pcap::TlsSession> batch;
    auto submit = [&] {
      if (batch.empty()) return;
      making.push_back(std::async(std::launch::async, [&ctx, b = std::move(batch)] {
        Made m;
        for (const auto& s : b) {
          auto j = records::to_json(s, ctx);
          ++m.records;
          if (!j["flags"].empty()) ++m.flagged;
          for (const auto& flag : j["flags"]) ++m.by_flag[flag["kind"].get<std::string>()];
          m.lines += j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
          m.lines += '\n';
        }
        return m;
      }));
      batch.clear();
      while (making.size() > kBatchesInFlight) {
        write_made(making.front().get());
        making.pop_front();
      }
    };
    drivers::PcapReadHooks hooks;
    hooks.on_session = [&](pcap::TlsSession&& s) {
      batch.push_back(std::move(s));
      if (batch.size() >= kBatch) submit();
    };
    hooks.on_progress = [&](uint64_t at) { bar.update((done_bytes + at) / (1 << 20), fmt::format("{} TLS", sessions)); };
    auto stats = drivers::read_pcap(path, hooks);
    submit();
    for (auto& m : making) write_made(m.get());
    making.clear();
    if (!stats) {
      bar.finish();
      (void)out->finish(false);
      throw UsageError(stats.error() + " (not a pcap or pcapng file?)");
    }
    done_bytes += std::filesystem::file_size(path);
    if (!f.quiet)
      fmt::print(stderr, "{}: {} frames, {} TCP connections, {} with TLS, {} UDP conversations, {} with QUIC{}\n", path,
                 stats->frames, stats->sessions.connections, stats->sessions.tls, stats->quic.conversations, stats->quic.quic,
                 stats->fragments ? fmt::format(", {} IP fragments skipped", stats->fragments) : "");
    if (!stats->error.empty()) {
      read_error = stats->error + fmt::format(" (the {} TLS connections before it were written)", stats->sessions.tls);
      break;
    }
  }
  bar.finish();
  if (auto ok = out->finish(read_error.empty()); !ok && write_error.empty()) write_error = ok.error();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!f.quiet) {
    fmt::print(stderr, "{} TLS connections, {} flagged", sessions, flagged);
    for (const auto& [k, n] : by_flag) fmt::print(stderr, "; {} {}", k, n);
    fmt::print(stderr, " ({:.1f} MiB in {:.2f} s)\n", static_cast<double>(done_bytes) / (1 << 20), secs);
  }
  if (!write_error.empty()) throw std::runtime_error(write_error);
  if (!read_error.empty()) throw std::runtime_error(read_error);
  return cli::kExitOk;
}

}  // namespace

Action add_pcap_command(CLI::App& app) {
  auto f = std::make_shared<PcapFlags>();
  app.footer(R"(Examples:
  mitmwatch pcap capture.pcapng | jq -c '[.client, .sni, .ja4, .ja3]'
  mitmwatch pcap kz-2019/*.pcap -o sessions.jsonl
  jq -c 'select(.flags != []) | [.server, .sni, .flags]' sessions.jsonl

One JSON object per TLS connection (schema mitmwatch.pcap/1, docs/fingerprints.md):
endpoints, SNI, ALPN, versions, cipher, the fingerprints ja3, ja3s, ja4, ja4s,
tlsfp (with -r also ja3_full, ja4_r, ja4_o, ja4_ro, ja3s_full, ja4s_r), the certificate chain when it went in
clear (TLS <= 1.2), each direction's IP TTL runs and first IP IDs, and flags:
  known-interceptor        the chain holds or is signed by a known interception root
  forgery-sign             the leaf has a mark of the known forgeries (RSA exponent 3, ...)
  interceptor-fingerprint  the ClientHello is a known interception device's own
  ttl-break                the server's packets changed IP TTL mid-connection
  ip-id-break              the server's IP ID sequence jumped
TCP is reassembled per direction (out of order, retransmitted, overlapping
segments); TLS after a SOCKS or HTTP CONNECT preamble is found. QUIC (v1 and
v2, any UDP port): the client's Initials are decrypted with the keys of their
Destination Connection ID and the ClientHello put back together from CRYPTO
frames across packets and datagrams ("transport": "quic", JA4 starting with q).

Exit codes: 0 done; 1 a file ended in the middle (what was read is written); 2 bad usage.)");
  app.add_option("files", f->files, "pcap or pcapng files")->required()->check(CLI::ExistingFile);
  app.add_option("-o,--output", f->output, "JSON Lines output ('-': stdout)")->capture_default_str();
  app.add_flag("--overwrite", f->overwrite, "Replace an existing output file");
  app.add_option("--interceptors", f->interceptors, "Registry of known interception roots (default: built in)");
  app.add_option("--fingerprints", f->fingerprints,
                 "Registry of interception devices' ClientHello fingerprints (default: built in, data/fingerprints.json)");
  app.add_flag("-r,--raw", f->raw, "Also the strings the hashes are made of: ja3_full, ja4_r, ja4_o, ja4_ro, ja3s_full, ja4s_r");
  app.add_flag("-q,--quiet", f->quiet, "No progress bar or summary");
  add_store_options(app, *f);
  return [f] { return run_pcap(*f); };
}

}  // namespace mw::app
