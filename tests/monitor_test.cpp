// The change-point rules of monitor, round by round.
#include "monitor/changes.hpp"

#include <gtest/gtest.h>

using namespace mw;
using monitor::RoundSummary;

namespace {

RoundSummary round_of(int64_t judged, int64_t intercepted, const std::string& issuer = "CN=Security Certificate",
                      const std::vector<std::string>& snis = {"facebook.com"}) {
  RoundSummary r;
  r.judged = r.records = judged;
  r.intercepted = intercepted;
  for (int64_t i = 0; i < intercepted; ++i)
    r.hits.push_back({"192.0.2." + std::to_string(i) + ":443", snis[static_cast<size_t>(i) % snis.size()], issuer, i});
  return r;
}

std::vector<std::string> types(const std::vector<monitor::Change>& cs) {
  std::vector<std::string> out;
  for (const auto& c : cs) out.push_back(c.type);
  return out;
}

}  // namespace

TEST(MonitorChanges, TheFirstRoundIsABaseline) {
  monitor::History h;
  EXPECT_TRUE(detect(h, round_of(100, 30)).empty());
  EXPECT_TRUE(detect(h, round_of(100, 30)).empty());
}

TEST(MonitorChanges, StopAndStartAreEventsWithTheirShares) {
  monitor::History h;
  detect(h, round_of(100, 30));
  auto stop = detect(h, round_of(100, 0));
  ASSERT_EQ(types(stop), std::vector<std::string>{"interception-stopped"});
  EXPECT_DOUBLE_EQ(stop[0].details["share_before"].get<double>(), 0.3);
  EXPECT_TRUE(detect(h, round_of(100, 0)).empty());
  auto start = detect(h, round_of(100, 25));
  ASSERT_EQ(types(start), std::vector<std::string>{"interception-started"});
  EXPECT_EQ(start[0].details["example"]["sni"], "facebook.com");
}

TEST(MonitorChanges, AShareMovesOnlyBeyondChanceAndTheFloor) {
  monitor::History h;
  detect(h, round_of(1000, 300));
  EXPECT_TRUE(detect(h, round_of(1000, 330)).empty()) << "3 points: under the 10-point floor";
  EXPECT_EQ(types(detect(h, round_of(1000, 150))), std::vector<std::string>{"share-moved"});
  monitor::History small;
  detect(small, round_of(10, 3));
  EXPECT_TRUE(detect(small, round_of(10, 5)).empty()) << "20 points of 10 targets is chance";
}

TEST(MonitorChanges, NewIssuersAndTriggersAreNamedOnce) {
  monitor::History h;
  detect(h, round_of(100, 20));
  auto c = detect(h, round_of(100, 20, "CN=Other CA", {"facebook.com", "vk.com"}));
  EXPECT_EQ(types(c), (std::vector<std::string>{"new-issuer", "new-trigger"}));
  EXPECT_EQ(c[0].subject, "CN=Other CA");
  EXPECT_EQ(c[1].subject, "vk.com");
  EXPECT_TRUE(detect(h, round_of(100, 20, "CN=Other CA", {"facebook.com", "vk.com"})).empty());
}

TEST(MonitorChanges, ADeviceThatMovesHopIsReported) {
  monitor::History h;
  auto r = round_of(10, 10);
  r.hop_pair["192.0.2.1:443"] = "10.0.0.2 > 10.0.0.3";
  detect(h, r);
  r.hop_pair["192.0.2.1:443"] = "10.0.0.3 > 10.0.0.4";
  auto c = detect(h, r);
  ASSERT_EQ(types(c), std::vector<std::string>{"device-moved"});
  EXPECT_EQ(c[0].details["hops_before"], "10.0.0.2 > 10.0.0.3");
}

TEST(MonitorChanges, ARoundThatReachedNothingIsNoEvidence) {
  monitor::History h;
  detect(h, round_of(100, 30));
  EXPECT_TRUE(detect(h, round_of(0, 0)).empty());
  EXPECT_TRUE(detect(h, round_of(100, 30)).empty());
}
