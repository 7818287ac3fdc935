#include "net/opt_out.hpp"
#include "net/targets.hpp"

#include <gtest/gtest.h>

#include <set>
#include <sstream>

using namespace mw::net;

namespace {

std::vector<std::string> expand(std::vector<TargetSpec> specs, TargetFilter filter = {}) {
  TargetStream stream(std::move(specs), std::move(filter));
  std::vector<std::string> out;
  while (auto e = stream.next()) out.push_back(e->to_string());
  return out;
}

TargetSpec spec(const std::string& text) {
  auto s = parse_target(text, 443);
  EXPECT_TRUE(s) << s.error();
  return *s;
}

// A filter with the default blocklist lifted (or not) and a shard.
TargetFilter filter_of(bool allow_reserved, Shard shard = {}) {
  TargetFilter f;
  f.allow_reserved = allow_reserved;
  f.shard = shard;
  return f;
}

}  // namespace

TEST(Targets, ParsesEveryForm) {
  EXPECT_EQ(expand({spec("192.0.2.7")}, filter_of(true)), std::vector<std::string>{"192.0.2.7:443"});
  EXPECT_EQ(expand({spec("192.0.2.7:8443")}, filter_of(true)), std::vector<std::string>{"192.0.2.7:8443"});
  EXPECT_EQ(expand({spec("[2001:db8::1]:853")}, filter_of(true)), std::vector<std::string>{"[2001:db8::1]:853"});
  EXPECT_EQ(expand({spec("2001:db8::1")}, filter_of(true)), std::vector<std::string>{"[2001:db8::1]:443"});
  EXPECT_EQ(expand({spec("localhost:8443")}, filter_of(true)).size(), 1u);
  auto block = expand({spec("198.51.100.4/30:10443")}, filter_of(true));
  EXPECT_EQ(block, (std::vector<std::string>{"198.51.100.4:10443", "198.51.100.5:10443", "198.51.100.6:10443",
                                             "198.51.100.7:10443"}));
  // Host bits are cleared, as in every CIDR tool.
  EXPECT_EQ(expand({spec("198.51.100.9/31")}, filter_of(true)).front(), "198.51.100.8:443");
  EXPECT_EQ(expand({spec("[2001:db8::/126]:443")}, filter_of(true)).size(), 4u);
}

TEST(Targets, CarriesAcrossByteBoundaries) {
  auto out = expand({spec("10.0.0.254/23")}, filter_of(true));
  ASSERT_EQ(out.size(), 512u);
  EXPECT_EQ(out[255], "10.0.0.255:443");
  EXPECT_EQ(out[256], "10.0.1.0:443");
}

TEST(Targets, RejectsMalformedInputWithItsText) {
  for (const char* bad : {"", "1.2.3", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:x", "10.0.0.0/33", "[::1", "[::1]x",
                          "2001:db8::/64"}) {
    auto s = parse_target(bad, 443);
    ASSERT_FALSE(s) << bad;
    if (*bad) {
      EXPECT_NE(s.error().find(bad), std::string::npos) << s.error();
    }
  }
}

TEST(Targets, NamesAreRefusedWhenResolutionIsOff) {
  auto s = parse_target("localhost:443", 443, false);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().find("host names"), std::string::npos);
}

TEST(Targets, ReadsFilesWithCommentsAndNamesTheBadLine) {
  std::istringstream good("# hosts\n192.0.2.1\n\n192.0.2.2:8443  # second\n");
  auto specs = read_targets(good, "hosts.txt", 443);
  ASSERT_TRUE(specs);
  EXPECT_EQ(specs->size(), 2u);
  std::istringstream bad("192.0.2.1\nnot an address\n");
  auto err = read_targets(bad, "hosts.txt", 443);
  ASSERT_FALSE(err);
  EXPECT_NE(err.error().find("hosts.txt:2"), std::string::npos) << err.error();
}

TEST(Targets, ReservedRangesAreRefusedOrSkipped) {
  EXPECT_TRUE(is_reserved(*IpAddress::parse("127.0.0.1")));
  EXPECT_TRUE(is_reserved(*IpAddress::parse("10.1.2.3")));
  EXPECT_TRUE(is_reserved(*IpAddress::parse("fd00::1")));
  EXPECT_FALSE(is_reserved(*IpAddress::parse("92.47.151.210")));
  EXPECT_FALSE(is_reserved(*IpAddress::parse("2a00:1450::1")));
  // A single reserved address is an error; inside a block it is skipped.
  EXPECT_FALSE(check_reserved({spec("127.0.0.1")}, filter_of(false)));
  EXPECT_TRUE(check_reserved({spec("127.0.0.1")}, filter_of(true)));
  TargetStream stream({spec("100.63.255.254/31"), spec("100.64.0.0/31")}, {});
  std::vector<std::string> got;
  while (auto e = stream.next()) got.push_back(e->to_string());
  EXPECT_EQ(got, (std::vector<std::string>{"100.63.255.254:443", "100.63.255.255:443"}));
  EXPECT_EQ(stream.skipped_reserved(), 2u);
}

// The shipped list is data/blocklist.conf; --default-blocklist replaces it.
TEST(Targets, TheDefaultBlocklistIsTheShippedFileUnlessReplaced) {
  EXPECT_GE(shipped_blocklist().size(), 26u);
  for (const char* a : {"0.1.2.3", "192.0.2.1", "198.18.5.5", "255.255.255.255", "2001:db8::1", "ff02::1"})
    EXPECT_TRUE(is_reserved(*IpAddress::parse(a))) << a;
  TargetFilter replaced;
  replaced.default_blocklist = std::vector<Prefix>{*Prefix::parse("203.0.113.0/25")};
  EXPECT_TRUE(check_reserved({spec("127.0.0.1")}, replaced)) << "the shipped list no longer applies";
  auto refused = check_reserved({spec("203.0.113.9")}, replaced);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("--default-blocklist"), std::string::npos) << refused.error();
  // TEST-NET-3 is in the shipped list; only its lower half is in this one.
  TargetStream stream({spec("203.0.113.9"), spec("203.0.113.200")}, replaced);
  std::vector<std::string> got;
  while (auto e = stream.next()) got.push_back(e->to_string());
  EXPECT_EQ(got, std::vector<std::string>{"203.0.113.200:443"});
  EXPECT_EQ(stream.skipped_reserved(), 1u);
}

TEST(Targets, OptOutListsNameAddressesAndNamesAndSayWhereTheyAreWrong) {
  std::istringstream in("# asked 2026-11-02\n92.47.151.0/24  # ops@example.net\n2a00:1450::/32\n"
                        "Example.ORG\n*.example.net\n\n");
  auto o = read_opt_out(in, "opt-out.txt");
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->prefixes.size(), 2u);
  EXPECT_TRUE(o->covers_name("example.org"));
  EXPECT_TRUE(o->covers_name("EXAMPLE.org."));
  EXPECT_FALSE(o->covers_name("www.example.org")) << "a bare name is that name only";
  EXPECT_TRUE(o->covers_name("a.b.example.net"));
  EXPECT_TRUE(o->covers_name("example.net"));
  EXPECT_FALSE(o->covers_name("badexample.net"));
  TargetFilter f;
  f.opted_out = o->prefixes;
  auto named = check_reserved({spec("92.47.151.7")}, f);
  ASSERT_FALSE(named);
  EXPECT_NE(named.error().find("opt-out list"), std::string::npos);
  TargetStream stream({spec("92.47.150.254/23")}, f);
  uint64_t n = 0;
  while (stream.next()) ++n;
  EXPECT_EQ(n, 256u);
  EXPECT_EQ(stream.skipped_opted_out(), 256u);
  std::istringstream bad("92.47.151.0/24\nnot a name!\n");
  auto err = read_opt_out(bad, "opt-out.txt");
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error(), "opt-out.txt:2: 'not a name!' is not an address, a prefix, a name or *.name");
}

// A lookup in a merged, sorted set agrees with checking every prefix.
TEST(Targets, APrefixSetAgreesWithEveryPrefixChecked) {
  std::vector<Prefix> list;
  for (const char* p : {"10.0.0.0/8", "10.1.0.0/16", "10.255.255.255/32", "11.0.0.0/8", "192.0.2.0/25", "0.0.0.0/32",
                        "255.255.255.255/32", "2001:db8::/32", "::/128", "ffff::/16"})
    list.push_back(*Prefix::parse(p));
  PrefixSet set(list);
  for (const char* a : {"9.255.255.255", "10.0.0.0", "11.255.255.255", "12.0.0.0", "192.0.2.127", "192.0.2.128",
                        "0.0.0.0", "0.0.0.1", "255.255.255.255", "255.255.255.254", "2001:db8:ffff::1", "2001:db9::",
                        "::", "::1", "ffff:ffff::", "fffe::"}) {
    auto ip = *IpAddress::parse(a);
    bool any = std::any_of(list.begin(), list.end(), [&](const Prefix& p) { return p.contains(ip); });
    EXPECT_EQ(set.contains(ip), any) << a;
  }
  EXPECT_TRUE(PrefixSet({*Prefix::parse("::/0")}).contains(*IpAddress::parse("1234::5")));
  EXPECT_FALSE(PrefixSet({*Prefix::parse("::/0")}).contains(*IpAddress::parse("1.2.3.4"))) << "families apart";
}

TEST(Targets, BlocklistInZmapFormat) {
  std::istringstream in("# zmap blocklist\n203.0.113.0/30 # docs\n203.0.113.9\n");
  auto bl = read_blocklist(in, "bl.conf");
  ASSERT_TRUE(bl) << bl.error();
  TargetFilter f;
  f.allow_reserved = true;
  f.blocklist = *bl;
  TargetStream stream({spec("203.0.113.0/28")}, f);
  int n = 0;
  while (stream.next()) ++n;
  EXPECT_EQ(n, 16 - 4 - 1);
  EXPECT_EQ(stream.skipped_blocklisted(), 5u);
  std::istringstream bad("203.0.113.0/30\n300.1.1.1\n");
  auto err = read_blocklist(bad, "bl.conf");
  ASSERT_FALSE(err);
  EXPECT_NE(err.error().find("bl.conf:2"), std::string::npos);
}

TEST(Targets, ShardsCoverEachTargetExactlyOnce) {
  std::vector<TargetSpec> specs{spec("198.18.0.0/22"), spec("[2001:db8::/118]:8443")};
  auto all = expand(specs, filter_of(true));
  std::multiset<std::string> union_of_shards;
  for (uint32_t i = 0; i < 5; ++i) {
    TargetFilter f = filter_of(true, Shard{i, 5});
    auto part = expand(specs, f);
    EXPECT_GT(part.size(), all.size() / 10) << "shard " << i << " is badly unbalanced";
    union_of_shards.insert(part.begin(), part.end());
  }
  EXPECT_EQ(union_of_shards, std::multiset<std::string>(all.begin(), all.end()));
  // Independent of input order.
  std::vector<TargetSpec> reversed{specs[1], specs[0]};
  auto a = expand(specs, filter_of(true, Shard{2, 5})), b = expand(reversed, filter_of(true, Shard{2, 5}));
  EXPECT_EQ(std::set<std::string>(a.begin(), a.end()), std::set<std::string>(b.begin(), b.end()));
}

TEST(Targets, ShardSyntax) {
  EXPECT_TRUE(Shard::parse("0/1"));
  EXPECT_TRUE(Shard::parse("3/4"));
  for (const char* bad : {"4/4", "1", "a/b", "1/0", "-1/3", "1/3x"}) EXPECT_FALSE(Shard::parse(bad)) << bad;
}

TEST(Targets, CountMatchesWhatTheStreamYields) {
  TargetFilter f = filter_of(false, Shard{1, 3});
  TargetStream stream({spec("100.63.255.0/23")}, f);
  auto counted = stream.count();
  ASSERT_TRUE(counted);
  uint64_t n = 0;
  while (stream.next()) ++n;
  EXPECT_EQ(*counted, n);
  EXPECT_FALSE(TargetStream({spec("11.0.0.0/8")}, {}).count(1000).has_value());
}
