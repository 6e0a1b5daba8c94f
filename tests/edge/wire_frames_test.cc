// The /ws frames the edge writes (welcome, gap) and parses (ack, refresh): CONTRACT §3.
#include "edge/wire_frames.h"

#include <boost/json.hpp>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/json_object.h"

namespace push::edge {
namespace {

namespace json = boost::json;

using ::push::testing::Keys;
using ::push::testing::ParseObject;

TEST(EncodeTest, WelcomeFrame) {
  std::string f = EncodeWelcome("c0ffee", "user@example.com", 17);
  EXPECT_EQ(f,
            R"({"type":"welcome","connection_id":"c0ffee","user_id":"user@example.com","seq":17})");
  json::object o = ParseObject(f);
  EXPECT_EQ(Keys(o), (std::vector<std::string>{"type", "connection_id", "user_id", "seq"}));
  EXPECT_EQ(ParseObject(EncodeWelcome("c", "u", 0)).at("seq"), 0);
}

TEST(EncodeTest, GapFrame) {
  EXPECT_EQ(EncodeGap(3, 9), R"({"type":"gap","from":3,"to":9})");
  json::object o = ParseObject(EncodeGap(1, 18446744073709551615ull));
  EXPECT_EQ(o.at("to").as_uint64(), 18446744073709551615ull);
}

bool Parse(const std::string& text, ClientFrame* frame, std::string* error) {
  *frame = ClientFrame{};
  error->clear();
  return ParseClientFrame(text, frame, error);
}

TEST(ParseClientFrameTest, AcceptsAck) {
  ClientFrame f;
  std::string error;
  ASSERT_TRUE(Parse(R"({"type":"ack","seq":5})", &f, &error)) << error;
  EXPECT_EQ(f.type, ClientFrame::Type::kAck);
  EXPECT_EQ(f.seq, 5u);

  ASSERT_TRUE(Parse(R"( {"seq":0, "type":"ack"} )", &f, &error)) << error;
  EXPECT_EQ(f.seq, 0u);
  ASSERT_TRUE(Parse(R"({"type":"ack","seq":18446744073709551615})", &f, &error)) << error;
  EXPECT_EQ(f.seq, 18446744073709551615ull);
}

TEST(ParseClientFrameTest, RejectsWhatIsNotJsonOrNotAnObject) {
  ClientFrame f;
  std::string error;
  for (const char* text : {"", "ack", "{\"type\":\"ack\",\"seq\":5", "{\"type\":\"ack\"}{}",
                           "{\"type\":\"a\xff\",\"seq\":1}"}) {
    EXPECT_FALSE(Parse(text, &f, &error)) << text;
    EXPECT_EQ(error, "frame is not JSON") << text;
  }
  for (const char* text : {"[]", R"([{"type":"ack","seq":5}])", "5", "\"ack\"", "null"}) {
    EXPECT_FALSE(Parse(text, &f, &error)) << text;
    EXPECT_EQ(error, "frame is not a JSON object") << text;
  }
}

TEST(ParseClientFrameTest, RejectsMissingOrUnknownType) {
  ClientFrame f;
  std::string error;
  for (const char* text : {R"({"seq":5})", R"({"type":1,"seq":5})", R"({"type":null})"}) {
    EXPECT_FALSE(Parse(text, &f, &error)) << text;
    EXPECT_NE(error.find("type"), std::string::npos) << error;
  }
  for (const char* text :
       {R"({"type":"ping","seq":5})", R"({"type":"ACK","seq":5})", R"({"type":"","seq":5})"}) {
    EXPECT_FALSE(Parse(text, &f, &error)) << text;
    EXPECT_EQ(error, "unknown frame type") << text;
  }
}

TEST(ParseClientFrameTest, RejectsMissingOrBadSeq) {
  ClientFrame f;
  std::string error;
  EXPECT_FALSE(Parse(R"({"type":"ack"})", &f, &error));
  EXPECT_NE(error.find("seq"), std::string::npos) << error;
  for (const char* text :
       {R"({"type":"ack","seq":-1})", R"({"type":"ack","seq":1.5})", R"({"type":"ack","seq":5.0})",
        R"({"type":"ack","seq":1e3})", R"({"type":"ack","seq":"5"})",
        R"({"type":"ack","seq":null})", R"({"type":"ack","seq":true})",
        R"({"type":"ack","seq":[5]})", R"({"type":"ack","seq":18446744073709551616})"}) {
    EXPECT_FALSE(Parse(text, &f, &error)) << text;
    EXPECT_NE(error.find("seq"), std::string::npos) << text << ": " << error;
  }
}

TEST(ParseClientFrameTest, HandlesAFrameAtTheSizeLimit) {
  // Frames may be up to 4096 bytes; padding inside a string must not break parsing.
  std::string text = R"({"type":"ack","seq":9,"pad":")";
  text += std::string(4096 - text.size() - 2, 'p');
  text += "\"}";
  ASSERT_EQ(text.size(), 4096u);
  ClientFrame f;
  std::string error;
  ASSERT_TRUE(Parse(text, &f, &error)) << error;
  EXPECT_EQ(f.seq, 9u);
}

TEST(RefreshFrameTest, ParsesTheTokenAndRefusesAFrameWithoutOne) {
  ClientFrame frame;
  std::string error;
  ASSERT_TRUE(ParseClientFrame(R"({"type":"refresh","token":"a.b.c"})", &frame, &error)) << error;
  EXPECT_EQ(frame.type, ClientFrame::Type::kRefresh);
  EXPECT_EQ(frame.token, "a.b.c");
  for (const char* bad : {R"({"type":"refresh"})", R"({"type":"refresh","token":7})",
                          R"({"type":"refresh","token":null})"}) {
    EXPECT_FALSE(ParseClientFrame(bad, &frame, &error)) << bad;
    EXPECT_NE(error.find("token"), std::string::npos) << error;
  }
  ASSERT_TRUE(ParseClientFrame(R"({"type":"ack","seq":3})", &frame, &error));
  EXPECT_EQ(frame.type, ClientFrame::Type::kAck);
  EXPECT_EQ(frame.seq, 3u);
}

}  // namespace
}  // namespace push::edge
