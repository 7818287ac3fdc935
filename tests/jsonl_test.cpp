#include "io/jsonl.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>

using namespace mw;

TEST(Jsonl, WritesWholeLinesAndAppends) {
  test::TempDir dir;
  auto path = dir.file("out.jsonl");
  {
    auto w = io::JsonlWriter::open(path, false);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->write(nlohmann::json{{"a", 1}}));
  }
  {
    auto w = io::JsonlWriter::open(path, true);
    ASSERT_TRUE(w->write(nlohmann::json{{"a", 2}}));
  }
  EXPECT_EQ(test::read_file(path), "{\"a\":1}\n{\"a\":2}\n");
}

TEST(Jsonl, RecoverCutsATornLastLine) {
  test::TempDir dir;
  auto path = dir.file("out.jsonl");
  test::write_file(path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3, \"b\":");
  std::vector<int> seen;
  auto n = io::recover(path, [&](const nlohmann::json& r) { seen.push_back(r["a"].get<int>()); });
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(seen, (std::vector<int>{1, 2}));
  EXPECT_EQ(test::read_file(path), "{\"a\":1}\n{\"a\":2}\n");
}

TEST(Jsonl, RecoverRefusesACorruptCompleteLine) {
  test::TempDir dir;
  auto path = dir.file("out.jsonl");
  test::write_file(path, "{\"a\":1}\ngarbage\n{\"a\":3}\n");
  auto n = io::recover(path, [](const nlohmann::json&) {});
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().find("out.jsonl:2"), std::string::npos) << n.error();
}

TEST(Jsonl, RecoverOfAMissingFileIsEmpty) {
  test::TempDir dir;
  auto n = io::recover(dir.file("absent.jsonl"), [](const nlohmann::json&) {});
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u);
}

TEST(Jsonl, OpenFailsWithThePath) {
  auto w = io::JsonlWriter::open("/nonexistent-dir/x.jsonl", false);
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().find("/nonexistent-dir/x.jsonl"), std::string::npos);
}
