#include "edge/http_query.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace push {
namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

TEST(ParseRequestTargetTest, PathWithoutQuery) {
  absl::StatusOr<RequestTarget> t = ParseRequestTarget("/healthz");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->path, "/healthz");
  EXPECT_TRUE(t->params.empty());
  EXPECT_EQ(t->Param("user_id"), nullptr);
}

TEST(ParseRequestTargetTest, SplitsPathAndParamsInOrder) {
  absl::StatusOr<RequestTarget> t = ParseRequestTarget("/ws?user_id=alice&since=42&ack=1");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->path, "/ws");
  EXPECT_EQ(t->params, (Params{{"user_id", "alice"}, {"since", "42"}, {"ack", "1"}}));
  ASSERT_NE(t->Param("since"), nullptr);
  EXPECT_EQ(*t->Param("since"), "42");
  EXPECT_EQ(t->Param("missing"), nullptr);
}

TEST(ParseRequestTargetTest, PercentDecodesKeysValuesAndPath) {
  absl::StatusOr<RequestTarget> t =
      ParseRequestTarget("/get%50ushNews?user%49d=a%40b.com&x=%e2%82%AC&y=%2B%26%3d");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->path, "/getPushNews");
  EXPECT_EQ(t->params, (Params{{"userId", "a@b.com"}, {"x", "\xe2\x82\xac"}, {"y", "+&="}}));
}

TEST(ParseRequestTargetTest, PlusIsASpaceInTheQueryOnly) {
  absl::StatusOr<RequestTarget> t = ParseRequestTarget("/a+b?q=hello+world&k+1=v");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->path, "/a+b");
  ASSERT_NE(t->Param("q"), nullptr);
  EXPECT_EQ(*t->Param("q"), "hello world");
  ASSERT_NE(t->Param("k 1"), nullptr);
  EXPECT_EQ(*t->Param("k 1"), "v");
}

TEST(ParseRequestTargetTest, ParamsWithoutValuesEmptyPairsAndFragment) {
  absl::StatusOr<RequestTarget> t = ParseRequestTarget("/ws?ack&&user_id=&=x&z=1#frag&w=2");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->path, "/ws");
  EXPECT_EQ(t->params, (Params{{"ack", ""}, {"user_id", ""}, {"", "x"}, {"z", "1"}}));
  EXPECT_EQ(t->Param("w"), nullptr);
}

TEST(ParseRequestTargetTest, ValueMayContainEquals) {
  absl::StatusOr<RequestTarget> t = ParseRequestTarget("/ws?token=a.b=c==");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_NE(t->Param("token"), nullptr);
  EXPECT_EQ(*t->Param("token"), "a.b=c==");
}

TEST(ParseRequestTargetTest, RepeatedParamKeepsAllAndParamReturnsTheFirst) {
  absl::StatusOr<RequestTarget> t = ParseRequestTarget("/ws?user_id=first&user_id=second");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->params.size(), 2u);
  ASSERT_NE(t->Param("user_id"), nullptr);
  EXPECT_EQ(*t->Param("user_id"), "first");
}

TEST(ParseRequestTargetTest, RejectsBadEscapes) {
  for (const char* target : {"/ws?user_id=%", "/ws?user_id=%4", "/ws?user_id=a%4", "/ws?x=%zz",
                             "/ws?x=%4g", "/ws?x=%g4", "/ws?%=1", "/w%s", "/ws%2", "/ws?x=1%"}) {
    absl::StatusOr<RequestTarget> t = ParseRequestTarget(target);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << target;
    if (!t.ok()) {
      EXPECT_NE(std::string(t.status().message()).find("percent-escape"), std::string::npos)
          << t.status();
    }
  }
}

TEST(PercentDecodeTest, DecodesEscapesAtEveryPosition) {
  EXPECT_EQ(*PercentDecode("%40", false), "@");
  EXPECT_EQ(*PercentDecode("a%40", false), "a@");
  EXPECT_EQ(*PercentDecode("%40a", false), "@a");
  EXPECT_EQ(*PercentDecode("%41%42%43", false), "ABC");
  EXPECT_EQ(*PercentDecode("%00", false), std::string("\0", 1));
  EXPECT_EQ(*PercentDecode("%25%32%30", false), "%20");  // decoded once, not twice
  EXPECT_EQ(*PercentDecode("", false), "");
}

TEST(PercentDecodeTest, PlusHandlingFollowsTheFlag) {
  EXPECT_EQ(*PercentDecode("a+b", true), "a b");
  EXPECT_EQ(*PercentDecode("a+b", false), "a+b");
  EXPECT_EQ(*PercentDecode("a%2Bb", true), "a+b");
}

}  // namespace
}  // namespace push
