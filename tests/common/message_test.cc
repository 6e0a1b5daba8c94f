#include "common/message.h"

#include <boost/json.hpp>
#include <string>

#include "absl/time/time.h"
#include "common/json.h"
#include "gtest/gtest.h"

namespace push {
namespace {

namespace json = boost::json;

json::object ParseObject(const std::string& text) {
  json::value v = json::parse(text);
  EXPECT_TRUE(v.is_object()) << text;
  return v.is_object() ? v.as_object() : json::object();
}

std::vector<std::string> Keys(const json::object& o) {
  std::vector<std::string> keys;
  for (const auto& kv : o) keys.emplace_back(kv.key());
  return keys;
}

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

}  // namespace
}  // namespace push
