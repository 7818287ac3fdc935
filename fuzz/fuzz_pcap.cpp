// A capture file as `mitmwatch pcap` reads it: libpcap's pcap/pcapng reader,
// then link layers, IP, TCP reassembly, TLS records and the JSON record of
// every TLS connection. The input goes to an in-memory file (memfd).
#include "drivers/pcap_read.hpp"
#include "fingerprint/fingerprint_registry.hpp"
#include "records/tls_session_record.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int fd = memfd_create("fuzz-pcap", 0);
  static const auto interceptors = mw::certs::InterceptorRegistry::builtin();
  static const auto fingerprints = mw::fingerprint::FingerprintRegistry::builtin();
  if (fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  mw::records::SessionContext ctx{"fuzz", &interceptors, &fingerprints};
  mw::drivers::PcapReadHooks hooks;
  // As the JSON Lines writer does: bytes that are not UTF-8 (a hostile SNI) are replaced.
  hooks.on_session = [&](mw::pcap::TlsSession&& s) {
    (void)mw::records::to_json(s, ctx).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  };
  (void)mw::drivers::read_pcap(path, hooks);
  return 0;
}
