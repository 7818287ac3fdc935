// Target lists: parsing, CIDR expansion, blocklists, reserved ranges and shards.
// Targets are expanded lazily, so a /8 costs no memory.
#pragma once

#include "net/address.hpp"
#include "net/prefix_set.hpp"

#include <tl/expected.hpp>

#include <istream>
#include <optional>
#include <string>
#include <vector>

namespace mw::net {

struct TargetSpec {
  Prefix prefix;
  uint16_t port = 443;
  std::string origin;  // the text it came from, for messages
};

// One target: "1.2.3.4", "1.2.3.4:8443", "[::1]:443", "::1", "10.0.0.0/24",
// "10.0.0.0/24:8443", "[2001:db8::/120]:443", "localhost:443" (resolved now,
// unless `resolve_names` is false: then a name is an error).
tl::expected<TargetSpec, std::string> parse_target(std::string_view text, uint16_t default_port,
                                                   bool resolve_names = true);

// Reads one target a line; '#' starts a comment; blank lines are skipped.
// Errors name the source and line.
tl::expected<std::vector<TargetSpec>, std::string> read_targets(std::istream& in, const std::string& source,
                                                                 uint16_t default_port, bool resolve_names = true);

// zmap's blocklist format: one prefix or address a line, '#' comments.
tl::expected<std::vector<Prefix>, std::string> read_blocklist(std::istream& in, const std::string& source);

struct Shard {
  uint32_t index = 0;  // 0-based, as zmap's --shard
  uint32_t count = 1;
  // Deterministic by address and port, independent of input order.
  bool owns(const Endpoint& e) const;
  static tl::expected<Shard, std::string> parse(std::string_view text);  // "I/N"
};

struct TargetFilter {
  std::vector<Prefix> blocklist;  // --blocklist: more to skip
  bool allow_reserved = false;    // --allow-private: the default blocklist lifted
  Shard shard;
  std::vector<Prefix> opted_out;  // opt-out lists: owners who asked not to be measured
  // --default-blocklist FILE: instead of the shipped list (data/blocklist.conf).
  std::optional<std::vector<Prefix>> default_blocklist;
  // The list reserved addresses are checked against: none, the replacement, or the shipped one.
  const std::vector<Prefix>& reserved() const;
};

// Refuses a single address the user named outright when the default
// blocklist or the opt-out list holds it; inside a larger prefix such
// addresses are skipped and counted instead.
tl::expected<void, std::string> check_reserved(const std::vector<TargetSpec>& specs, const TargetFilter& filter);

class TargetStream {
 public:
  TargetStream(std::vector<TargetSpec> specs, TargetFilter filter);
  std::optional<Endpoint> next();
  uint64_t skipped_reserved() const { return skipped_reserved_; }
  uint64_t skipped_blocklisted() const { return skipped_blocklisted_; }
  uint64_t skipped_opted_out() const { return skipped_opted_out_; }
  // Exact number of targets next() will yield, counted by a dry pass when the
  // input holds at most `limit` addresses; nullopt otherwise.
  std::optional<uint64_t> count(uint64_t limit = 20'000'000) const;

 private:
  std::vector<TargetSpec> specs_;
  TargetFilter filter_;
  size_t spec_ = 0;
  uint64_t offset_ = 0;
  uint64_t skipped_reserved_ = 0;
  uint64_t skipped_blocklisted_ = 0;
  uint64_t skipped_opted_out_ = 0;
  PrefixSet reserved_, blocklist_, opted_out_;
};

}  // namespace mw::net
