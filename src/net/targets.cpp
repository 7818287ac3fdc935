#include "net/targets.hpp"

#include <netdb.h>

#include <algorithm>
#include <charconv>

namespace mw::net {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

tl::expected<uint16_t, std::string> parse_port(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || value == 0 || value > 65535)
    return tl::unexpected("'" + std::string(whole) + "': port must be 1..65535");
  return static_cast<uint16_t>(value);
}

tl::expected<IpAddress, std::string> resolve(std::string_view host, std::string_view whole) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string h(host);
  if (int rc = getaddrinfo(h.c_str(), nullptr, &hints, &res); rc != 0)
    return tl::unexpected("'" + std::string(whole) + "': cannot resolve host '" + h + "': " + gai_strerror(rc));
  Endpoint e = Endpoint::from_sockaddr(res->ai_addr);
  freeaddrinfo(res);
  return e.ip;
}

}  // namespace

tl::expected<TargetSpec, std::string> parse_target(std::string_view text, uint16_t default_port,
                                                   bool resolve_names) {
  text = trim(text);
  if (text.empty()) return tl::unexpected(std::string("empty target"));
  std::string_view host = text;
  uint16_t port = default_port;
  if (text.front() == '[') {  // [v6]:port or [v6/len]:port
    auto close = text.find(']');
    if (close == std::string_view::npos) return tl::unexpected("'" + std::string(text) + "': missing ']'");
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return tl::unexpected("'" + std::string(text) + "': expected ':PORT' after ']'");
      auto p = parse_port(rest.substr(1), text);
      if (!p) return tl::unexpected(p.error());
      port = *p;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {  // v4, v4/len or name, with :port
    auto colon = text.find(':');
    host = text.substr(0, colon);
    auto p = parse_port(text.substr(colon + 1), text);
    if (!p) return tl::unexpected(p.error());
    port = *p;
  }
  auto prefix = Prefix::parse(host);
  if (!prefix) {
    if (host.find('/') != std::string_view::npos || host.find(':') != std::string_view::npos ||
        host.find_first_not_of("0123456789.") == std::string_view::npos)
      return tl::unexpected("'" + std::string(text) + "': " + prefix.error());
    if (!resolve_names) return tl::unexpected("'" + std::string(text) + "': host names are not accepted here");
    auto addr = resolve(host, text);
    if (!addr) return tl::unexpected(addr.error());
    prefix = Prefix{*addr, addr->bits()};
  }
  if (prefix->base.family == AF_INET6 && prefix->length < 96)
    return tl::unexpected("'" + std::string(text) + "': IPv6 prefixes shorter than /96 are too large to scan");
  return TargetSpec{*prefix, port, std::string(text)};
}

tl::expected<std::vector<TargetSpec>, std::string> read_targets(std::istream& in, const std::string& source,
                                                                 uint16_t default_port, bool resolve_names) {
  std::vector<TargetSpec> out;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    std::string_view view = line;
    view = trim(view.substr(0, view.find('#')));
    if (view.empty()) continue;
    auto spec = parse_target(view, default_port, resolve_names);
    if (!spec) return tl::unexpected(source + ":" + std::to_string(n) + ": " + spec.error());
    out.push_back(*spec);
  }
  if (in.bad()) return tl::unexpected(source + ": read error");
  return out;
}

tl::expected<std::vector<Prefix>, std::string> read_blocklist(std::istream& in, const std::string& source) {
  std::vector<Prefix> out;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    std::string_view view = line;
    view = trim(view.substr(0, view.find('#')));
    if (view.empty()) continue;
    auto p = Prefix::parse(view);
    if (!p) return tl::unexpected(source + ":" + std::to_string(n) + ": " + p.error());
    out.push_back(*p);
  }
  if (in.bad()) return tl::unexpected(source + ": read error");
  return out;
}

bool Shard::owns(const Endpoint& e) const {
  if (count <= 1) return true;
  // FNV-1a over address and port: stable across runs, machines and input order.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint8_t b) { h = (h ^ b) * 1099511628211ull; };
  for (size_t i = 0; i < e.ip.size(); ++i) mix(e.ip.bytes[i]);
  mix(static_cast<uint8_t>(e.port >> 8));
  mix(static_cast<uint8_t>(e.port));
  return h % count == index;
}

tl::expected<Shard, std::string> Shard::parse(std::string_view text) {
  auto slash = text.find('/');
  Shard s;
  auto bad = [&] {
    return tl::unexpected("--shard '" + std::string(text) + "': expected I/N with 0 <= I < N (0-based, as zmap)");
  };
  if (slash == std::string_view::npos) return bad();
  auto a = text.substr(0, slash), b = text.substr(slash + 1);
  auto r1 = std::from_chars(a.data(), a.data() + a.size(), s.index);
  auto r2 = std::from_chars(b.data(), b.data() + b.size(), s.count);
  if (a.empty() || b.empty() || r1.ec != std::errc() || r2.ec != std::errc() || r1.ptr != a.data() + a.size() ||
      r2.ptr != b.data() + b.size() || s.count == 0 || s.index >= s.count)
    return bad();
  return s;
}

const std::vector<Prefix>& TargetFilter::reserved() const {
  static const std::vector<Prefix> none;
  if (allow_reserved) return none;
  return default_blocklist ? *default_blocklist : shipped_blocklist();
}

tl::expected<void, std::string> check_reserved(const std::vector<TargetSpec>& specs, const TargetFilter& filter) {
  PrefixSet reserved(filter.reserved()), opted_out(filter.opted_out);
  for (const auto& spec : specs) {
    if (spec.prefix.count() != 1) continue;
    if (reserved.contains(spec.prefix.base))
      return tl::unexpected("target '" + spec.origin + "' is in " +
                            (filter.default_blocklist ? std::string("the --default-blocklist")
                                                      : std::string("a reserved or private range (data/blocklist.conf)")) +
                            "; pass --allow-private to scan it");
    if (opted_out.contains(spec.prefix.base))
      return tl::unexpected("target '" + spec.origin + "' is on the opt-out list: its owner asked not to be measured");
  }
  return {};
}

TargetStream::TargetStream(std::vector<TargetSpec> specs, TargetFilter filter)
    : specs_(std::move(specs)),
      filter_(std::move(filter)),
      reserved_(filter_.reserved()),
      blocklist_(filter_.blocklist),
      opted_out_(filter_.opted_out) {}

std::optional<Endpoint> TargetStream::next() {
  while (spec_ < specs_.size()) {
    const TargetSpec& spec = specs_[spec_];
    if (offset_ >= spec.prefix.count()) {
      ++spec_;
      offset_ = 0;
      continue;
    }
    Endpoint e{spec.prefix.at(offset_++), spec.port};
    if (!filter_.shard.owns(e)) continue;
    if (reserved_.contains(e.ip)) {
      ++skipped_reserved_;
      continue;
    }
    if (blocklist_.contains(e.ip)) {
      ++skipped_blocklisted_;
      continue;
    }
    if (opted_out_.contains(e.ip)) {
      ++skipped_opted_out_;
      continue;
    }
    return e;
  }
  return std::nullopt;
}

std::optional<uint64_t> TargetStream::count(uint64_t limit) const {
  uint64_t total = 0;
  for (const auto& s : specs_) {
    total += s.prefix.count();
    if (total > limit) return std::nullopt;
  }
  TargetStream dry(specs_, filter_);
  uint64_t n = 0;
  while (dry.next()) ++n;
  return n;
}

}  // namespace mw::net
