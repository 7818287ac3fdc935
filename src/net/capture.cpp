#include "net/capture.hpp"

#include <algorithm>
#include <cstdio>

namespace mw::net {

tl::expected<LiveCapture, std::string> LiveCapture::open(const std::string& device, const std::string& filter,
                                                         int snaplen, int buffer_bytes) {
  char err[PCAP_ERRBUF_SIZE] = {};
  LiveCapture c;
  c.handle_.reset(pcap_create(device.c_str(), err));
  if (!c.handle_) return tl::unexpected("capture on " + device + ": " + err);
  pcap_t* p = c.handle_.get();
  pcap_set_snaplen(p, snaplen);
  pcap_set_promisc(p, 0);
  // Immediate mode: packets are handed over as they come, not per filled
  // block; the trace's RTTs and ordering depend on it.
  pcap_set_immediate_mode(p, 1);
  pcap_set_buffer_size(p, buffer_bytes);
  int rc = pcap_activate(p);
  if (rc < 0) {
    std::string why = pcap_geterr(p);
    if (rc == PCAP_ERROR_PERM_DENIED || why.find("ermission") != std::string::npos ||
        why.find("not permitted") != std::string::npos)
      return tl::unexpected("capture on " + device + ": " + why +
                            " (raw packet capture needs CAP_NET_RAW: run as root or "
                            "`setcap cap_net_raw+ep` on the binary)");
    return tl::unexpected("capture on " + device + ": " + why);
  }
  if (!filter.empty()) {
    bpf_program prog;
    if (pcap_compile(p, &prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0)
      return tl::unexpected("capture filter '" + filter + "': " + pcap_geterr(p));
    int set = pcap_setfilter(p, &prog);
    pcap_freecode(&prog);
    if (set != 0) return tl::unexpected("capture filter: " + std::string(pcap_geterr(p)));
  }
  if (pcap_setnonblock(p, 1, err) != 0) return tl::unexpected(std::string("capture: ") + err);
  return c;
}

int LiveCapture::fd() const { return pcap_get_selectable_fd(handle_.get()); }
int LiveCapture::linktype() const { return pcap_datalink(handle_.get()); }

tl::expected<int, std::string> LiveCapture::drain(const std::function<void(const CapturedPacket&)>& visit) {
  struct Ctx {
    const std::function<void(const CapturedPacket&)>* visit;
  } ctx{&visit};
  auto cb = [](u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
    auto* c = reinterpret_cast<Ctx*>(user);
    CapturedPacket pkt;
    pkt.frame = Bytes(bytes, h->caplen);
    pkt.when = std::chrono::system_clock::time_point(std::chrono::seconds(h->ts.tv_sec) +
                                                     std::chrono::microseconds(h->ts.tv_usec));
    pkt.header = h;
    (*c->visit)(pkt);
  };
  int total = 0;
  for (;;) {
    int n = pcap_dispatch(handle_.get(), -1, cb, reinterpret_cast<u_char*>(&ctx));
    if (n < 0) return tl::unexpected(std::string("capture: ") + pcap_geterr(handle_.get()));
    if (n == 0) return total;
    total += n;
  }
}

uint64_t LiveCapture::dropped() const {
  pcap_stat st{};
  if (pcap_stats(handle_.get(), &st) != 0) return 0;
  return st.ps_drop;
}

tl::expected<PcapWriter, std::string> PcapWriter::open(const LiveCapture& like, const std::string& path) {
  PcapWriter w;
  w.dumper_.reset(pcap_dump_open(like.get(), path.c_str()));
  if (!w.dumper_) return tl::unexpected("--pcap " + path + ": " + pcap_geterr(like.get()));
  return w;
}

void PcapWriter::write(const CapturedPacket& packet) {
  pcap_dump(reinterpret_cast<u_char*>(dumper_.get()), packet.header, packet.frame.data());
}

void PcapWriter::flush() { pcap_dump_flush(dumper_.get()); }

}  // namespace mw::net

namespace mw::net {

tl::expected<PcapFile, std::string> PcapFile::open(const std::string& path) {
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_MICRO, err);
  if (!p) return tl::unexpected(path + ": " + err);
  PcapFile f;
  f.handle_.reset(p);
  f.path_ = path;
  return f;
}

int PcapFile::linktype() const { return pcap_datalink(handle_.get()); }

uint64_t PcapFile::position() const {
  FILE* f = pcap_file(handle_.get());
  long at = f ? std::ftell(f) : -1;
  return at < 0 ? 0 : static_cast<uint64_t>(at);
}

PcapFile::Next PcapFile::next(CapturedPacket& out) {
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  int rc = pcap_next_ex(handle_.get(), &header, &data);
  if (rc == 1) {
    out.frame = Bytes(data, header->caplen);
    // A file's timestamps are whatever it says: clamp them to what a
    // nanosecond time_point holds (until 2262), or later arithmetic overflows.
    constexpr int64_t kMaxSeconds = 9'000'000'000;
    int64_t sec = std::clamp<int64_t>(header->ts.tv_sec, 0, kMaxSeconds);
    int64_t usec = std::clamp<int64_t>(header->ts.tv_usec, 0, 999'999'999);
    out.when = std::chrono::system_clock::time_point(std::chrono::seconds(sec) + std::chrono::microseconds(usec));
    out.header = header;
    return Next::packet;
  }
  if (rc == PCAP_ERROR_BREAK) return Next::end;
  error_ = path_ + ": " + pcap_geterr(handle_.get());
  return Next::error;
}

}  // namespace mw::net
