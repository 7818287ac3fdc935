// libpcap, owned: a live capture that an epoll loop can wait on, and a
// pcap file writer. Opening a live capture needs CAP_NET_RAW.
#pragma once

#include "net/packet.hpp"

#include <pcap/pcap.h>
#include <tl/expected.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace mw::net {

struct CapturedPacket {
  Bytes frame;
  std::chrono::system_clock::time_point when;
  const pcap_pkthdr* header = nullptr;  // for writers
};

class PcapWriter;

class LiveCapture {
 public:
  // `device` "any" captures every interface (Linux cooked frames). The ring
  // holds buffer_bytes / snaplen packets: 2048 bytes keeps whole frames of a
  // 1500-byte MTU while holding 16k packets.
  static tl::expected<LiveCapture, std::string> open(const std::string& device, const std::string& filter,
                                                     int snaplen = 2048, int buffer_bytes = 32 << 20);
  int fd() const;  // readable when packets wait
  int linktype() const;
  // Hands every waiting packet to `visit`; returns how many, or an error.
  tl::expected<int, std::string> drain(const std::function<void(const CapturedPacket&)>& visit);
  // Packets the kernel dropped for want of buffer space, so far.
  uint64_t dropped() const;
  pcap_t* get() const { return handle_.get(); }

 private:
  struct Close {
    void operator()(pcap_t* p) const { pcap_close(p); }
  };
  std::unique_ptr<pcap_t, Close> handle_;
};

// A pcap or pcapng file, read packet by packet (libpcap).
class PcapFile {
 public:
  static tl::expected<PcapFile, std::string> open(const std::string& path);
  int linktype() const;
  enum class Next { packet, end, error };
  // The packet stays valid until the next call. On `error`, error() says what.
  Next next(CapturedPacket& out);
  const std::string& error() const { return error_; }
  uint64_t position() const;  // bytes of the file read so far

 private:
  struct Close {
    void operator()(pcap_t* p) const { pcap_close(p); }
  };
  std::unique_ptr<pcap_t, Close> handle_;
  std::string path_, error_;
};

class PcapWriter {
 public:
  // Writes packets of `like`'s link type and snap length to `path`.
  static tl::expected<PcapWriter, std::string> open(const LiveCapture& like, const std::string& path);
  void write(const CapturedPacket& packet);
  void flush();

 private:
  struct Close {
    void operator()(pcap_dumper_t* d) const { pcap_dump_close(d); }
  };
  std::unique_ptr<pcap_dumper_t, Close> dumper_;
};

}  // namespace mw::net
