#include "lab/link_delay.hpp"

#include "net/privileges.hpp"

#include <linux/capability.h>

// netinet/in.h before the netfilter headers, which pull in linux/in.h otherwise.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <libnfnetlink/libnfnetlink.h>
#include <linux/netfilter.h>

#include <fmt/format.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <fstream>

namespace mw::lab {
namespace {

using Clock = std::chrono::steady_clock;

struct Held {
  uint32_t id;
  Clock::time_point release;
};

struct DelayState {
  std::chrono::milliseconds delay;
  std::deque<Held> held;  // constant delay: release order is arrival order
};

int on_packet(nfq_q_handle*, nfgenmsg*, nfq_data* nfa, void* data) {
  auto* s = static_cast<DelayState*>(data);
  if (auto* ph = nfq_get_msg_packet_hdr(nfa)) s->held.push_back({ntohl(ph->packet_id), Clock::now() + s->delay});
  return 0;
}

}  // namespace

int run_link_delay(int delay_ms, const std::string& ready_file) {
  DelayState state{std::chrono::milliseconds(delay_ms), {}};
  nfq_handle* h = nfq_open();
  if (!h) {
    fmt::print(stderr, "link delay: nfq_open failed (needs CAP_NET_ADMIN)\n");
    return 1;
  }
  nfq_unbind_pf(h, AF_INET);
  nfq_bind_pf(h, AF_INET);
  nfq_q_handle* qh = nfq_create_queue(h, kDelayQueue, &on_packet, &state);
  // Metadata only: the packet stays in the kernel until its verdict.
  if (!qh || nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
    fmt::print(stderr, "link delay: cannot bind NFQUEUE {}\n", kDelayQueue);
    nfq_close(h);
    return 1;
  }
  nfq_set_queue_maxlen(qh, 65536);
  nfnl_rcvbufsiz(nfq_nfnlh(h), 8 * 1024 * 1024);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // The queue is bound: verdicts still need CAP_NET_ADMIN (nfnetlink asks for
  // it on every message), the rest of root does not.
  auto dropped = net::drop_to_user(net::default_unprivileged_user(), {CAP_NET_ADMIN});
  if (!dropped) {
    fmt::print(stderr, "link delay: giving up root: {}\n", dropped.error());
    nfq_destroy_queue(qh);
    nfq_close(h);
    return 1;
  }
  std::ofstream(ready_file) << getpid() << "\n";
  int fd = nfq_fd(h);
  char buf[4096];
  for (;;) {
    timespec zero{0, 0};
    if (sigtimedwait(&set, nullptr, &zero) > 0) break;
    auto now = Clock::now();
    while (!state.held.empty() && state.held.front().release <= now) {
      nfq_set_verdict(qh, state.held.front().id, NF_ACCEPT, 0, nullptr);
      state.held.pop_front();
    }
    int wait_ms = 100;
    if (!state.held.empty())
      wait_ms = static_cast<int>(std::max<int64_t>(
          0, std::chrono::ceil<std::chrono::milliseconds>(state.held.front().release - now).count()));
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, wait_ms) <= 0) continue;
    // Take everything waiting, so arrival times stay exact.
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      nfq_handle_packet(h, buf, static_cast<int>(n));
    }
  }
  // Whatever is still held goes now: nothing is lost when the lab stops.
  for (const auto& held : state.held) nfq_set_verdict(qh, held.id, NF_ACCEPT, 0, nullptr);
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}

}  // namespace mw::lab
