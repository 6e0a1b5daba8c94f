#include "common/delivery/message.h"

#include <boost/json.hpp>
#include <string>

#include "absl/time/time.h"
#include "common/json/json.h"
#include "gtest/gtest.h"
#include "tests/testing/json_object.h"

namespace push {
namespace {

namespace json = boost::json;

using ::push::testing::Keys;
using ::push::testing::ParseObject;

TEST(MakeMessageTest, FrameIsTheEnvelopeWithExactFields) {
  absl::Time now = absl::FromUnixMillis(1700000000123);
  MessagePtr m =
      MakeMessage(42, "order-7", now, now + absl::Hours(1), R"({"text":"h\u00e9llo","n":[1,2]})");
  ASSERT_TRUE(ValidateJson(m->Frame()).ok()) << m->Frame();
  json::object o = ParseObject(m->Frame());
  EXPECT_EQ(Keys(o), (std::vector<std::string>{"type", "seq", "id", "ts", "data"}));
  EXPECT_EQ(o.at("type"), "message");
  EXPECT_EQ(o.at("seq"), 42);
  EXPECT_EQ(o.at("id"), "order-7");
  EXPECT_EQ(o.at("ts"), 1700000000123);
  EXPECT_EQ(o.at("data"), json::parse(R"({"text":"h\u00e9llo","n":[1,2]})"));
  EXPECT_EQ(m->seq, 42u);
  EXPECT_EQ(m->id, "order-7");
  EXPECT_EQ(m->ts_ms, 1700000000123);
  EXPECT_EQ(m->expires_at, now + absl::Hours(1));
}

TEST(MakeMessageTest, DataIsTheExactBytesPushed) {
  // Whitespace, key order, number spelling and escapes are kept verbatim.
  for (const std::string& data :
       {std::string("1"), std::string("\"s\""), std::string("null"),
        std::string(" { \"b\" : 1.50 , \"a\" : \"\\u0041\" } "),
        std::string("[\"caf\xc3\xa9\", \"\xf0\x9f\x98\x80\"]"), std::string(100000, ' ') + "0"}) {
    MessagePtr m = MakeMessage(1, "id", absl::UnixEpoch(), absl::InfiniteFuture(), data);
    EXPECT_EQ(m->data(), data);
    EXPECT_TRUE(ValidateJson(m->Frame()).ok()) << m->Frame().substr(0, 200);
    EXPECT_EQ(m->Frame().back(), '}');
  }
}

TEST(MakeMessageTest, IdIsEscapedInTheFrame) {
  MessagePtr m = MakeMessage(1, "a\"b\\c", absl::UnixEpoch(), absl::InfiniteFuture(), "0");
  json::object o = ParseObject(m->Frame());
  EXPECT_EQ(o.at("id"), "a\"b\\c");
  EXPECT_EQ(m->data(), "0");
}

TEST(MakeMessageTest, FootprintGrowsWithData) {
  MessagePtr small = MakeMessage(1, "id", absl::UnixEpoch(), absl::InfiniteFuture(), "0");
  MessagePtr big = MakeMessage(1, "id", absl::UnixEpoch(), absl::InfiniteFuture(),
                               "\"" + std::string(10000, 'x') + "\"");
  EXPECT_GE(small->Footprint(), small->FrameSize());
  EXPECT_GE(big->Footprint(), small->Footprint() + 10000);
}

}  // namespace
}  // namespace push
