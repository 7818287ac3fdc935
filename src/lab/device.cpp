#include "lab/device.hpp"

#include "certs/issue.hpp"
#include "certs/x509.hpp"
#include "fingerprint/handshake_stream.hpp"
#include "fingerprint/hello.hpp"
#include "lab/flow_table.hpp"
#include "lab/lab.hpp"
#include "lab/schedule.hpp"
#include "net/fd.hpp"
#include "net/privileges.hpp"
#include "tls/socket_bio.hpp"
#include "tls/trust.hpp"

// glibc's network headers must come before the kernel's (linux/netfilter.h).
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <libnfnetlink/libnfnetlink.h>
#include <linux/netfilter.h>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <nlohmann/json.hpp>
#include <linux/capability.h>
#include <poll.h>
#include <unistd.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

namespace mw::lab {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// Kernel ABI for TCP_REPAIR (linux/tcp.h), not in glibc's netinet/tcp.h.
struct RepairOpt {
  uint32_t code;
  uint32_t value;
};
struct RepairWindow {
  uint32_t snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup;
};
constexpr int kRepairOn = 1, kRepairOff = 0;
constexpr int kRecvQueue = 1, kSendQueue = 2;
constexpr int kOptMss = 2, kOptWindow = 3, kOptSackPerm = 4;

// What the device learned of a server by connecting to it itself.
struct ServerInfo {
  enum class State { probing, trusted, untrusted } state = State::probing;
  tls::X509Ref real_leaf;
  std::shared_ptr<certs::ServedChain> forged;  // made on first hijack, reused for the host
};

bool names_equal(const DeviceConfig& d, std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return d.case_sensitive ? a == b : strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool trigger_matches(const DeviceConfig& d, const std::string& sni) {
  std::string_view name = sni;
  for (const auto& t : d.triggers) {
    if (names_equal(d, name, t)) return true;
    if (name.size() <= t.size()) continue;
    std::string_view tail = name.substr(name.size() - t.size());
    switch (d.match) {
      case TriggerMatch::exact: break;
      case TriggerMatch::subdomains:
        if (name[name.size() - t.size() - 1] == '.' && names_equal(d, tail, t)) return true;
        break;
      case TriggerMatch::suffix:
        if (names_equal(d, tail, t)) return true;
        break;
      case TriggerMatch::substring:
        for (size_t i = 0; i + t.size() <= name.size(); ++i)
          if (names_equal(d, name.substr(i, t.size()), t)) return true;
        break;
    }
  }
  return false;
}

// What the device could read of the client's first bytes.
struct HelloRead {
  enum class Status { whole, partial, not_hello } status = Status::not_hello;
  std::vector<std::string> names;
};

// Without `join_records` the device reads the first record only, as a simple
// DPI box does: a hello split over records is not a hello to it.
HelloRead read_hello(const std::vector<uint8_t>& bytes, bool join_records) {
  HelloRead out;
  auto parsed = [&](fingerprint::Bytes body) {
    auto h = fingerprint::parse_client_hello(body);
    if (!h) return out;
    out.status = HelloRead::Status::whole;
    out.names = h->server_names;
    return out;
  };
  if (join_records) {
    fingerprint::HandshakeStream stream;
    stream.feed(bytes);
    if (auto m = stream.next())
      return m->type == fingerprint::handshake_type::kClientHello ? parsed(m->body) : out;
    if (stream.state() == fingerprint::HandshakeStream::State::reading && stream.preamble() == 0)
      out.status = HelloRead::Status::partial;
    return out;
  }
  if (bytes.size() < 5) {
    out.status = bytes.empty() || bytes[0] == 22 ? HelloRead::Status::partial : HelloRead::Status::not_hello;
    return out;
  }
  size_t record = size_t{bytes[3]} << 8 | bytes[4];
  if (bytes[0] != 22) return out;
  if (bytes.size() < 5 + record) {
    out.status = HelloRead::Status::partial;
    return out;
  }
  if (record < 4 || bytes[5] != fingerprint::handshake_type::kClientHello) return out;
  size_t length = size_t{bytes[6]} << 16 | size_t{bytes[7]} << 8 | bytes[8];
  if (4 + length > record) return out;  // continues in another record: unread
  return parsed({bytes.data() + 9, length});
}

// OpenSSL, the device's own TLS server, refuses a server_name with more than
// one entry (RFC 6066). The device keeps `name` alone and fills the freed
// bytes with an unassigned extension, so the hello keeps its length and the
// TCP sequence numbers still fit. Only a hello in one record is rewritten.
void keep_one_server_name(std::vector<uint8_t>& b, const std::string& name) {
  size_t p = 5 + 4 + 2 + 32;
  auto u16 = [&](size_t at) { return at + 1 < b.size() ? size_t{b[at]} << 8 | b[at + 1] : size_t{0}; };
  if (b.size() < p + 1) return;
  p += 1 + b[p];
  p += 2 + u16(p);
  if (p >= b.size()) return;
  p += 1 + b[p];
  size_t end = std::min(b.size(), p + 2 + u16(p));
  p += 2;
  while (p + 4 <= end) {
    size_t type = u16(p), len = u16(p + 2);
    if (p + 4 + len > end) return;
    if (type == 0) {
      size_t fresh = 5 + name.size();
      if (fresh + 4 > len) return;
      std::vector<uint8_t> body{static_cast<uint8_t>((name.size() + 3) >> 8), static_cast<uint8_t>(name.size() + 3), 0,
                                static_cast<uint8_t>(name.size() >> 8), static_cast<uint8_t>(name.size())};
      body.insert(body.end(), name.begin(), name.end());
      size_t filler = len - fresh - 4;
      body.insert(body.end(), {0x4d, 0x57, static_cast<uint8_t>(filler >> 8), static_cast<uint8_t>(filler)});
      body.resize(body.size() + filler, 0);
      b[p + 2] = static_cast<uint8_t>(fresh >> 8);
      b[p + 3] = static_cast<uint8_t>(fresh);
      std::copy(body.begin(), body.end(), b.begin() + static_cast<long>(p + 4));
      return;
    }
    p += 4 + len;
  }
}

sockaddr_in ipv4(uint32_t ip_net, uint16_t port_host) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = ip_net;
  sa.sin_port = htons(port_host);
  return sa;
}

class Device {
 public:
  Device(std::string lab_name, LabConfig config) : name_(std::move(lab_name)), config_(std::move(config)) {}

  int run();

 private:
  static int on_packet(nfq_q_handle* qh, nfgenmsg*, nfq_data* nfa, void* self);
  int handle(nfq_q_handle* qh, nfq_data* nfa);
  bool server_trusted(uint32_t server_ip);
  net::Fd take_over(const FlowKey& key, const Flow& flow, uint32_t client_seq, uint32_t server_seq,
                    uint32_t client_window, const uint8_t* hello, size_t hello_len);
  void session(net::Fd client_fd, FlowKey key, std::string sni);
  std::shared_ptr<certs::ServedChain> forged_for(uint32_t server_ip);
  void probe_loop();
  void key_loop();
  void stats_loop();
  fs::path key_cache_file() const;

  std::string name_;
  LabConfig config_;
  fs::path dir_, run_;  // the lab's state (read), and where the device writes once unprivileged
  std::ofstream key_cache_;  // appended to by key_loop: opened while root
  certs::Authority kz_ca_;
  tls::TrustStore trust_ = tls::TrustStore::empty();
  tls::SslCtxPtr server_ctx_, upstream_ctx_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> enabled_{true};
  std::atomic<double> fraction_{1.0};  // of trigger flows taken over; a schedule changes it

  FlowTable flows_;  // the queue thread's own
  std::mt19937_64 rng_{std::random_device{}()};

  std::mutex servers_mu_;
  std::condition_variable servers_cv_;
  std::unordered_map<uint32_t, ServerInfo> servers_;
  std::deque<uint32_t> to_probe_;

  std::mutex keys_mu_;
  std::condition_variable keys_cv_;
  std::deque<tls::EvpPkeyPtr> keys_;
  static constexpr size_t kKeyPoolTarget = 24;

  std::atomic<int> sessions_{0};
  std::atomic<uint64_t> flows_seen_{0}, hellos_seen_{0}, hijacked_{0}, passed_{0}, upstream_ok_{0},
      upstream_failed_{0}, takeover_failed_{0};
  // Why a ClientHello was passed: each a separate count, for people debugging a lab.
  std::atomic<uint64_t> pass_off_{0}, pass_no_trigger_{0}, pass_fraction_{0}, pass_untrusted_{0}, pass_busy_{0},
      pass_not_whole_hello_{0}, unknown_flow_data_{0};
};

bool Device::server_trusted(uint32_t server_ip) {
  std::unique_lock lock(servers_mu_);
  auto it = servers_.find(server_ip);
  if (it == servers_.end()) {
    servers_[server_ip] = ServerInfo{};
    to_probe_.push_back(server_ip);
    servers_cv_.notify_all();
  }
  // The probe runs on its own thread, on the device's own address (not queued).
  servers_cv_.wait_for(lock, std::chrono::seconds(8),
                       [&] { return servers_[server_ip].state != ServerInfo::State::probing; });
  return servers_[server_ip].state == ServerInfo::State::trusted;
}

void Device::probe_loop() {
  auto profile = tls::SslCtxPtr(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_verify(profile.get(), SSL_VERIFY_NONE, nullptr);
  while (!stop_) {
    uint32_t ip;
    {
      std::unique_lock lock(servers_mu_);
      servers_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return !to_probe_.empty() || stop_; });
      if (to_probe_.empty()) continue;
      ip = to_probe_.front();
      to_probe_.pop_front();
    }
    ServerInfo info;
    info.state = ServerInfo::State::untrusted;
    net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    timeval tv{3, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    auto sa = ipv4(ip, 443);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      tls::SslPtr ssl(SSL_new(profile.get()));
      tls::attach_socket(ssl.get(), fd.get());
      if (SSL_connect(ssl.get()) == 1) {
        STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl.get());
        std::vector<X509*> certs;
        for (int i = 0; chain && i < sk_X509_num(chain); ++i) certs.push_back(sk_X509_value(chain, i));
        if (!certs.empty() && trust_.verify(certs, "").trusted) {
          info.state = ServerInfo::State::trusted;
          info.real_leaf = tls::X509Ref::share(certs.front());
        }
      }
    }
    ERR_clear_error();
    std::lock_guard lock(servers_mu_);
    servers_[ip] = std::move(info);
    servers_cv_.notify_all();
  }
}

// RSA keygen costs ~200 ms here: keys are made ahead on a thread and kept in
// a cache file across labs, so a hijack rarely waits for one.
fs::path Device::key_cache_file() const {
  return fs::path("/var/cache/mitmwatch-lab") /
         fmt::format("rsa{}-e{}.pem", config_.forgery.rsa_bits, config_.forgery.rsa_exponent);
}

void Device::key_loop() {
  fs::path file = key_cache_file();
  size_t cached = 0;
  {
    tls::BioPtr bio(BIO_new_file(file.c_str(), "r"));
    while (bio && !stop_) {
      EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
      if (!k) break;
      std::lock_guard lock(keys_mu_);
      keys_.emplace_back(k);
      ++cached;
    }
    ERR_clear_error();
  }
  keys_cv_.notify_all();
  while (!stop_) {
    {
      std::unique_lock lock(keys_mu_);
      keys_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return keys_.size() < kKeyPoolTarget || stop_; });
      if (keys_.size() >= kKeyPoolTarget || stop_) continue;
    }
    auto key = certs::make_rsa_key(config_.forgery.rsa_bits, config_.forgery.rsa_exponent);
    if (cached < 512) {  // opened while the device was root
      key_cache_ << certs::key_to_pem(key.get()) << std::flush;
      ++cached;
    }
    std::lock_guard lock(keys_mu_);
    keys_.push_back(std::move(key));
    keys_cv_.notify_all();
  }
}

std::shared_ptr<certs::ServedChain> Device::forged_for(uint32_t server_ip) {
  tls::X509Ref real;
  {
    std::lock_guard lock(servers_mu_);
    auto& info = servers_[server_ip];
    if (info.forged) return info.forged;
    real = info.real_leaf;
  }
  tls::EvpPkeyPtr key;
  {
    std::unique_lock lock(keys_mu_);
    keys_cv_.wait_for(lock, std::chrono::seconds(20), [&] { return !keys_.empty(); });
    if (!keys_.empty()) {
      key = std::move(keys_.front());
      keys_.pop_front();
    }
    keys_cv_.notify_all();
  }
  if (!key) key = certs::make_rsa_key(config_.forgery.rsa_bits, config_.forgery.rsa_exponent);
  certs::ForgeRecipe recipe;
  recipe.validity_shift = std::chrono::hours(config_.forgery.validity_shift_hours);
  recipe.serial_low_bits_replaced = config_.forgery.serial_low_bits_replaced;
  recipe.extensions = certs::ForgeRecipe::Extensions::fixed_2019;
  auto chain = std::make_shared<certs::ServedChain>();
  chain->leaf = certs::forge_like(real.get(), key.get(), kz_ca_, recipe);
  chain->key = std::move(key);
  chain->intermediates.push_back(tls::share(kz_ca_.cert.get()));
  std::lock_guard lock(servers_mu_);
  auto& info = servers_[server_ip];
  if (!info.forged) info.forged = chain;  // one key per host, reused
  return info.forged;
}

// Turns the client's half of the connection into a local socket: bound to
// the server's address (IP_TRANSPARENT), "connected" to the client with the
// observed sequence numbers (TCP_REPAIR), the ClientHello already in its
// receive queue. The original segment is then dropped: the server never sees it.
net::Fd Device::take_over(const FlowKey& key, const Flow& flow, uint32_t client_seq, uint32_t server_seq,
                          uint32_t client_window, const uint8_t* hello, size_t hello_len) {
  net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  auto set = [&](int level, int opt, const void* v, socklen_t len) { return setsockopt(fd.get(), level, opt, v, len) == 0; };
  auto server = ipv4(key.server_ip, ntohs(key.server_port)), client = ipv4(key.client_ip, ntohs(key.client_port));
  bool ok = fd && set(SOL_IP, IP_TRANSPARENT, &one, sizeof one) && set(SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) &&
            set(SOL_TCP, TCP_REPAIR, &kRepairOn, sizeof kRepairOn) &&
            set(SOL_TCP, TCP_REPAIR_QUEUE, &kSendQueue, sizeof kSendQueue) &&
            set(SOL_TCP, TCP_QUEUE_SEQ, &server_seq, sizeof server_seq) &&
            set(SOL_TCP, TCP_REPAIR_QUEUE, &kRecvQueue, sizeof kRecvQueue) &&
            set(SOL_TCP, TCP_QUEUE_SEQ, &client_seq, sizeof client_seq) &&
            ::bind(fd.get(), reinterpret_cast<sockaddr*>(&server), sizeof server) == 0 &&
            ::connect(fd.get(), reinterpret_cast<sockaddr*>(&client), sizeof client) == 0;
  // In repair mode a send() on the receive queue fills it, as if the segment had arrived.
  ok = ok && ::send(fd.get(), hello, hello_len, 0) == static_cast<ssize_t>(hello_len);
  std::vector<RepairOpt> opts{{kOptMss, flow.client.mss}};
  if (flow.client.wscale >= 0 && flow.server.wscale >= 0)
    opts.push_back({kOptWindow, static_cast<uint32_t>(flow.client.wscale) | (static_cast<uint32_t>(flow.server.wscale) << 16)});
  if (flow.client.sack && flow.server.sack) opts.push_back({kOptSackPerm, 0});
  ok = ok && set(SOL_TCP, TCP_REPAIR_OPTIONS, opts.data(), static_cast<socklen_t>(opts.size() * sizeof(RepairOpt)));
  uint32_t scale = flow.client.wscale >= 0 && flow.server.wscale >= 0 ? static_cast<uint32_t>(flow.client.wscale) : 0;
  RepairWindow win{client_seq, client_window << scale, client_window << scale, 65535, client_seq + static_cast<uint32_t>(hello_len)};
  ok = ok && set(SOL_TCP, TCP_REPAIR_WINDOW, &win, sizeof win);
  ok = ok && set(SOL_TCP, TCP_REPAIR, &kRepairOff, sizeof kRepairOff);
  if (!ok) {
    fmt::print(stderr, "device: take-over failed: {}\n", std::strerror(errno));
    return net::Fd();
  }
  return fd;
}

void Device::session(net::Fd client_fd, FlowKey key, std::string sni) {
  struct Done {
    std::atomic<int>& n;
    ~Done() { --n; }
  } done{sessions_};
  timeval tv{10, 0};
  setsockopt(client_fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(client_fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto chain = forged_for(key.server_ip);
  tls::SslPtr down(SSL_new(server_ctx_.get()));
  STACK_OF(X509)* extra = sk_X509_new_null();
  for (const auto& c : chain->intermediates) sk_X509_push(extra, c.get());
  SSL_use_cert_and_key(down.get(), chain->leaf.get(), chain->key.get(), extra, 1);
  sk_X509_free(extra);
  tls::attach_socket(down.get(), client_fd.get());
  if (SSL_accept(down.get()) != 1) {
    ERR_clear_error();
    return;
  }
  // Upstream: the device's own connection and ClientHello, from the client's address.
  net::Fd up_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(up_fd.get(), SOL_IP, IP_TRANSPARENT, &one, sizeof one);
  setsockopt(up_fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(up_fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto from = ipv4(key.client_ip, 0), to = ipv4(key.server_ip, ntohs(key.server_port));
  tls::SslPtr up(SSL_new(upstream_ctx_.get()));
  bool up_ok = ::bind(up_fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) == 0 &&
               ::connect(up_fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
  if (up_ok) {
    SSL_set_tlsext_host_name(up.get(), sni.c_str());
    tls::attach_socket(up.get(), up_fd.get());
    up_ok = SSL_connect(up.get()) == 1;
  }
  (up_ok ? upstream_ok_ : upstream_failed_)++;
  if (!up_ok) {
    ERR_clear_error();
    return;
  }
  // Relay until either side ends or goes quiet.
  pollfd fds[2] = {{client_fd.get(), POLLIN, 0}, {up_fd.get(), POLLIN, 0}};
  SSL* ends[2] = {down.get(), up.get()};
  char buf[16384];
  for (;;) {
    bool pending = SSL_pending(ends[0]) > 0 || SSL_pending(ends[1]) > 0;
    if (!pending && ::poll(fds, 2, 30000) <= 0) break;
    bool moved = false, closed = false;
    for (int i = 0; i < 2 && !closed; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && SSL_pending(ends[i]) == 0) continue;
      int n = SSL_read(ends[i], buf, sizeof buf);
      if (n <= 0 || SSL_write(ends[1 - i], buf, n) != n) closed = true;
      moved = true;
    }
    if (closed || !moved) break;
  }
  ERR_clear_error();
}

int Device::on_packet(nfq_q_handle* qh, nfgenmsg*, nfq_data* nfa, void* self) {
  return static_cast<Device*>(self)->handle(qh, nfa);
}

int Device::handle(nfq_q_handle* qh, nfq_data* nfa) {
  auto* ph = nfq_get_msg_packet_hdr(nfa);
  uint32_t id = ph ? ntohl(ph->packet_id) : 0;
  auto accept = [&] { return nfq_set_verdict(qh, id, NF_ACCEPT, 0, nullptr); };
  unsigned char* data = nullptr;
  int len = nfq_get_payload(nfa, &data);
  if (len < static_cast<int>(sizeof(iphdr))) return accept();
  auto* ip = reinterpret_cast<iphdr*>(data);
  size_t ihl = size_t{ip->ihl} * 4;
  if (ip->version != 4 || ip->protocol != IPPROTO_TCP || len < static_cast<int>(ihl + sizeof(tcphdr))) return accept();
  auto* tcp = reinterpret_cast<tcphdr*>(data + ihl);
  size_t doff = size_t{tcp->doff} * 4;
  size_t ip_len = std::min<size_t>(ntohs(ip->tot_len), static_cast<size_t>(len));
  if (doff < sizeof(tcphdr) || ihl + doff > ip_len) return accept();
  const uint8_t* payload = data + ihl + doff;
  size_t payload_len = ip_len - ihl - doff;
  const uint8_t* options = data + ihl + sizeof(tcphdr);
  size_t options_len = doff - sizeof(tcphdr);

  if (tcp->syn && !tcp->ack && ntohs(tcp->dest) == 443) {  // a client opens a flow
    FlowKey key{ip->saddr, ip->daddr, tcp->source, tcp->dest};
    if (!flows_.client_syn(key, ntohl(tcp->seq), parse_tcp_options(options, options_len))) return accept();
    ++flows_seen_;
    std::lock_guard lock(servers_mu_);
    if (!servers_.count(ip->daddr)) {
      servers_[ip->daddr] = ServerInfo{};
      to_probe_.push_back(ip->daddr);
      servers_cv_.notify_all();
    }
    return accept();
  }
  if (tcp->syn && tcp->ack && ntohs(tcp->source) == 443) {  // the server answers
    flows_.server_syn_ack({ip->daddr, ip->saddr, tcp->dest, tcp->source}, parse_tcp_options(options, options_len));
    return accept();
  }
  if (ntohs(tcp->dest) != 443 || payload_len == 0) return accept();
  FlowKey key{ip->saddr, ip->daddr, tcp->source, tcp->dest};
  Flow* tracked = flows_.established(key);
  if (!tracked) {
    ++unknown_flow_data_;
    return accept();
  }
  if (tracked->state != Flow::State::tracking) return accept();
  Flow& flow = *tracked;
  flow.last_seen = Clock::now();
  const DeviceConfig& rules = config_.device;
  uint32_t seq = ntohl(tcp->seq);
  if (flow.hello.empty()) flow.hello_seq = seq;
  if (seq != flow.hello_seq + flow.hello.size()) return accept();  // a retransmission or out of order: wait
  flow.hello.insert(flow.hello.end(), payload, payload + payload_len);
  auto hello = read_hello(flow.hello, rules.reassemble_records);
  // A reassembling device lets the first pieces through and keeps a copy.
  if (hello.status == HelloRead::Status::partial && rules.reassemble_segments && flow.hello.size() < 16384)
    return accept();
  if (hello.status != HelloRead::Status::whole) {
    flow.state = Flow::State::passed;  // not a (whole) ClientHello where it looks: leave the flow alone
    flow.hello = {};
    ++passed_;
    ++pass_not_whole_hello_;
    return accept();
  }
  std::optional<std::string> sni;
  if (!hello.names.empty()) sni = rules.last_sni_entry ? hello.names.back() : hello.names.front();
  if (sni && sni->empty()) sni.reset();
  ++hellos_seen_;
  std::uniform_real_distribution<double> coin(0, 1);
  std::atomic<uint64_t>* pass_reason = nullptr;
  if (!enabled_) pass_reason = &pass_off_;
  else if (!sni || !trigger_matches(config_.device, *sni)) pass_reason = &pass_no_trigger_;
  else if (coin(rng_) >= fraction_.load()) pass_reason = &pass_fraction_;
  else if (sessions_ >= 512) pass_reason = &pass_busy_;
  else if (!server_trusted(ip->daddr)) pass_reason = &pass_untrusted_;
  if (pass_reason) {
    flow.state = Flow::State::passed;
    flow.hello = {};
    ++passed_;
    ++*pass_reason;
    return accept();
  }
  uint32_t client_window = ntohs(tcp->window);
  if (hello.names.size() > 1) keep_one_server_name(flow.hello, *sni);
  auto fd = take_over(key, flow, flow.hello_seq, ntohl(tcp->ack_seq), client_window, flow.hello.data(), flow.hello.size());
  flow.hello = {};
  if (!fd) {
    ++takeover_failed_;
    flow.state = Flow::State::passed;
    return accept();
  }
  flow.state = Flow::State::hijacked;
  ++hijacked_;
  ++sessions_;
  std::thread(&Device::session, this, std::move(fd), key, *sni).detach();
  return nfq_set_verdict(qh, id, NF_DROP, 0, nullptr);
}

void Device::stats_loop() {
  fs::path switch_file = dir_ / "device-enabled";
  while (!stop_) {
    std::ifstream in(switch_file);
    std::string v;
    if (in >> v) enabled_ = v != "0";
    fraction_ = config_.device.fraction;
    // A schedule, while there is one, overrides the on/off switch.
    if (std::ifstream sched(dir_ / "device-schedule.json"); sched) {
      auto j = nlohmann::json::parse(sched, nullptr, false);
      if (auto s = j.is_discarded() ? tl::expected<DeviceSchedule, std::string>(tl::unexpect, "bad")
                                    : schedule_from_json(j)) {
        auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
        if (auto step = step_at(*s, now)) {
          enabled_ = step->on;
          fraction_ = step->fraction;
        }
      }
    }
    size_t keys;
    {
      std::lock_guard lock(keys_mu_);
      keys = keys_.size();
    }
    nlohmann::ordered_json j = {{"enabled", enabled_.load()}, {"fraction", fraction_.load()},  {"flows_seen", flows_seen_.load()},
                                {"client_hellos", hellos_seen_.load()}, {"hijacked", hijacked_.load()},
                                {"passed", passed_.load()},     {"takeover_failed", takeover_failed_.load()},
                                {"upstream_ok", upstream_ok_.load()}, {"upstream_failed", upstream_failed_.load()},
                                {"sessions_open", sessions_.load()}, {"spare_keys", keys},
                                {"passed_because", {{"device_off", pass_off_.load()}, {"not_a_trigger", pass_no_trigger_.load()},
                                                    {"fraction", pass_fraction_.load()}, {"server_untrusted", pass_untrusted_.load()},
                                                    {"too_many_sessions", pass_busy_.load()},
                                                    {"hello_not_whole", pass_not_whole_hello_.load()}}},
                                {"data_on_unknown_flows", unknown_flow_data_.load()}};
    // In a directory of the device's own user: it writes there after giving up root.
    std::ofstream(run_ / "device.json.tmp") << j.dump() << "\n";
    std::error_code ec;
    fs::rename(run_ / "device.json.tmp", run_ / "device.json", ec);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

int Device::run() {
  dir_ = state_dir(name_);
  run_ = run_dir(name_);
  auto root = certs::read_pem_file((dir_ / "public-root.pem").string());
  auto ca_cert = certs::read_pem_file((dir_ / "kz-ca.pem").string());
  auto ca_key = certs::read_key_pem_file((dir_ / "kz-ca.key").string());
  if (!root || !ca_cert || !ca_key) {
    fmt::print(stderr, "device: cannot read the lab's certificates in {}\n", dir_.string());
    return 1;
  }
  trust_.add(root->front().get());
  kz_ca_ = {std::move(ca_cert->front()), std::move(*ca_key)};
  server_ctx_.reset(SSL_CTX_new(TLS_server_method()));
  SSL_CTX_set_num_tickets(server_ctx_.get(), 0);
  // The device's own ClientHello upstream: TLS 1.2 at most, its own cipher
  // list, no ALPN: a fingerprint unlike the clients' (the report's "Censor's fingerprint").
  upstream_ctx_.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_max_proto_version(upstream_ctx_.get(), TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(upstream_ctx_.get(), "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA:AES256-SHA");
  SSL_CTX_set_options(upstream_ctx_.get(), SSL_OP_NO_TICKET);
  SSL_CTX_set_verify(upstream_ctx_.get(), SSL_VERIFY_NONE, nullptr);

  nfq_handle* h = nfq_open();
  if (!h) {
    fmt::print(stderr, "device: nfq_open failed (needs CAP_NET_ADMIN)\n");
    return 1;
  }
  nfq_unbind_pf(h, AF_INET);
  nfq_bind_pf(h, AF_INET);
  nfq_q_handle* qh = nfq_create_queue(h, 0, &Device::on_packet, this);
  if (!qh || nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0) {
    fmt::print(stderr, "device: cannot bind NFQUEUE 0\n");
    nfq_close(h);
    return 1;
  }
  // Room for bursts: a scan opens thousands of flows at once, and a packet the
  // queue cannot hold is dropped (the sender retransmits, late).
  nfq_set_queue_maxlen(qh, 65536);
  nfnl_rcvbufsiz(nfq_nfnlh(h), 16 * 1024 * 1024);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // What it writes later, made while root: its state directory (given to
  // the unprivileged user) and the key cache, open for appending.
  std::string user = net::default_unprivileged_user();
  std::error_code ec;
  fs::create_directories(key_cache_file().parent_path(), ec);
  key_cache_.open(key_cache_file(), std::ios::app);
  // NFQUEUE bound: from here on the device needs only CAP_NET_ADMIN (TCP_REPAIR,
  // IP_TRANSPARENT) and CAP_NET_RAW, as an unprivileged user; before its
  // threads start, since capabilities are per thread.
  auto dropped = net::drop_to_user(user, {CAP_NET_ADMIN, CAP_NET_RAW});
  if (!dropped) {
    fmt::print(stderr, "device: giving up root: {}\n", dropped.error());
    return 1;
  }
  fmt::print(stderr, "device: running as {}\n", dropped->describe());
  std::thread prober(&Device::probe_loop, this), keys(&Device::key_loop, this), stats(&Device::stats_loop, this);
  std::thread waiter([&] {
    int sig;
    sigwait(&set, &sig);
    stop_ = true;
  });
  std::ofstream(run_ / "device.ready") << getpid() << "\n";
  fmt::print(stderr, "device: watching port-443 flows; {} triggers\n", config_.device.triggers.size());
  int fd = nfq_fd(h);
  char buf[65536 + 4096];
  while (!stop_) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) nfq_handle_packet(h, buf, static_cast<int>(n));
  }
  servers_cv_.notify_all();
  keys_cv_.notify_all();
  prober.join();
  keys.join();
  stats.join();
  waiter.join();
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}

}  // namespace

int run_device(const std::string& lab_name) {
  auto plan = running_plan(lab_name);
  if (!plan) {
    fmt::print(stderr, "device: {}\n", plan.error());
    return 1;
  }
  Device device(lab_name, plan->config);
  return device.run();
}

void set_device_enabled(const std::string& lab_name, bool enabled) {
  std::ofstream(fs::path(state_dir(lab_name)) / "device-enabled") << (enabled ? "1" : "0") << "\n";
}

bool wait_device_state(const std::string& lab_name, bool enabled, std::chrono::milliseconds limit) {
  auto counters = fs::path(run_dir(lab_name)) / "device.json";
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::ifstream in(counters);
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("enabled") && j["enabled"].is_boolean() &&
        j["enabled"].get<bool>() == enabled)
      return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

}  // namespace mw::lab
