#include "edge/frame_reader.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "edge/edge_stream.h"
#include "tests/testing/clients.h"

namespace push::edge {
namespace {

using push::testing::RawClient;
using Kind = FrameReader::Event::Kind;

// What the reader reported, as text: "text:<payload>", "ping:<payload>", "close:<code>:<reason>",
// "fail:<code>".
std::string Describe(const FrameReader::Event& e) {
  switch (e.kind) {
    case Kind::kText:
      return "text:" + std::string(e.payload);
    case Kind::kBinary:
      return "binary:" + std::string(e.payload);
    case Kind::kPing:
      return "ping:" + std::string(e.payload);
    case Kind::kPong:
      return "pong:" + std::string(e.payload);
    case Kind::kClose:
      return "close:" + std::to_string(e.code) + ":" + std::string(e.payload);
    case Kind::kFail:
      return "fail:" + std::to_string(e.code);
  }
  return "?";
}

// Feeds `wire` in pieces of at most `piece` bytes (each copied, as a socket read would be).
std::vector<std::string> Read(const std::string& wire, size_t piece = SIZE_MAX,
                              FrameReader* reader = nullptr) {
  FrameReader own(4096);
  if (reader == nullptr) reader = &own;
  std::vector<std::string> events;
  for (size_t at = 0; at < wire.size(); at += piece) {
    std::vector<uint8_t> bytes(
        wire.begin() + static_cast<std::ptrdiff_t>(at),
        wire.begin() + static_cast<std::ptrdiff_t>(std::min(wire.size(), at + piece)));
    reader->Feed(bytes.data(), bytes.size(),
                 [&](const FrameReader::Event& e) { events.push_back(Describe(e)); });
  }
  return events;
}

std::string Frame(uint8_t op, const std::string& payload, bool fin = true) {
  return RawClient::EncodeFrame(op, payload, /*mask=*/true, fin);
}

std::string Close(uint16_t code, const std::string& reason) {
  std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  return Frame(0x8, payload + reason);
}

TEST(FrameReaderTest, ReadsMaskedFramesOfEveryKind) {
  const std::string ack = R"({"type":"ack","seq":7})";
  EXPECT_EQ(Read(Frame(0x1, ack)), std::vector<std::string>{"text:" + ack});
  EXPECT_EQ(Read(Frame(0x2, "\x01\x02")), std::vector<std::string>{"binary:\x01\x02"});
  EXPECT_EQ(Read(Frame(0x9, "hi") + Frame(0xA, "") + Frame(0x1, "")),
            (std::vector<std::string>{"ping:hi", "pong:", "text:"}));
  // 16-bit length.
  std::string long_text(300, 'x');
  EXPECT_EQ(Read(Frame(0x1, long_text)), std::vector<std::string>{"text:" + long_text});
}

TEST(FrameReaderTest, JoinsFragmentsAndAnswersControlFramesBetweenThem) {
  // A text message in three fragments (one empty), with a ping and a pong between them, and a
  // UTF-8 character split across two fragments.
  std::string wire = Frame(0x1, "{\"a\":\"\xc3", false) + Frame(0x9, "mid") +
                     Frame(0x0, "", false) + Frame(0xA, "p") + Frame(0x0, "\xa9\"}") +
                     Frame(0x2, "b1", false) + Frame(0x0, "b2");
  std::vector<std::string> want = {"ping:mid", "pong:p", "text:{\"a\":\"\xc3\xa9\"}",
                                   "binary:b1b2"};
  EXPECT_EQ(Read(wire), want);
}

TEST(FrameReaderTest, EverySplitOfTheBytesGivesTheSameEvents) {
  std::string wire = Frame(0x1, R"({"type":"ack","seq":1})") + Frame(0x9, "ping") +
                     Frame(0x1, "first half ", false) + Frame(0x9, "x") +
                     Frame(0x0, std::string(200, 'y')) + Frame(0xA, "") +
                     Frame(0x1, std::string(1000, 'z')) + Close(1000, "bye");
  const std::vector<std::string> whole = Read(wire);
  ASSERT_EQ(whole.size(), 7u);
  EXPECT_EQ(whole.back(), "close:1000:bye");
  for (size_t piece = 1; piece <= 40; ++piece) {
    SCOPED_TRACE(piece);
    EXPECT_EQ(Read(wire, piece), whole);
  }
  // Every single cut into two reads.
  for (size_t cut = 1; cut < wire.size(); ++cut) {
    FrameReader reader(4096);
    std::vector<std::string> events = Read(wire.substr(0, cut), SIZE_MAX, &reader);
    std::vector<std::string> rest = Read(wire.substr(cut), SIZE_MAX, &reader);
    events.insert(events.end(), rest.begin(), rest.end());
    ASSERT_EQ(events, whole) << "cut at " << cut;
  }
}

TEST(FrameReaderTest, HoldsNothingBetweenFramesAndPartOfAFrameWhileItComes) {
  FrameReader reader(4096);
  std::string frame = Frame(0x1, "hello");
  Read(frame.substr(0, 3), SIZE_MAX, &reader);
  EXPECT_TRUE(reader.partial());
  EXPECT_EQ(Read(frame.substr(3), SIZE_MAX, &reader), std::vector<std::string>{"text:hello"});
  EXPECT_FALSE(reader.partial());
  Read(Frame(0x1, "part", false), SIZE_MAX, &reader);
  EXPECT_TRUE(reader.partial());  // inside a fragmented message
  EXPECT_EQ(Read(Frame(0x0, "s"), SIZE_MAX, &reader), std::vector<std::string>{"text:parts"});
  EXPECT_FALSE(reader.partial());
  EXPECT_FALSE(reader.done());
}

TEST(FrameReaderTest, ProtocolViolationsFailWith1002AndNothingIsReadAfter) {
  const std::string ack = R"({"type":"ack","seq":0})";
  std::string unmasked = RawClient::EncodeFrame(0x1, ack, /*mask=*/false);
  // A 16-bit length that fits in 7 bits, and a 64-bit one that fits in 16.
  std::string short16 = std::string("\x81\xfe\x00\x05", 4) + "mask" + "abcde";
  std::string short64 = std::string("\x81\xff\x00\x00\x00\x00\x00\x00\x00\x05", 10) + "mask";
  std::string huge64 = std::string("\x81\xff\x80\x00\x00\x00\x00\x00\x00\x00", 10) + "mask";
  struct Case {
    const char* name;
    std::string wire;
  } cases[] = {
      {"unmasked", unmasked},
      {"reserved bit 1", RawClient::EncodeFrame(0x1, ack, true, true, 4)},
      {"reserved bit 3", RawClient::EncodeFrame(0x1, ack, true, true, 1)},
      {"reserved opcode 0x3", Frame(0x3, ack)},
      {"reserved control opcode 0xB", Frame(0xB, "")},
      {"continuation without a message", Frame(0x0, ack)},
      {"fragmented ping", Frame(0x9, "x", false)},
      {"ping over 125 bytes", Frame(0x9, std::string(126, 'p'))},
      {"new message inside a fragmented one", Frame(0x1, "{", false) + Frame(0x1, "}")},
      {"16-bit length not in its shortest form", short16},
      {"64-bit length not in its shortest form", short64},
      {"64-bit length with its top bit set", huge64},
      {"close frame with one byte", Frame(0x8, "\x03")},
      {"close code 1005", Close(1005, "")},
      {"close code 999", Close(999, "")},
      {"close code 2000", Close(2000, "")},
      {"close code 5000", Close(5000, "")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FrameReader reader(4096);
    std::vector<std::string> events = Read(c.wire + Frame(0x9, "after"), SIZE_MAX, &reader);
    EXPECT_EQ(events, std::vector<std::string>{"fail:1002"});
    EXPECT_TRUE(reader.done());
  }
}

TEST(FrameReaderTest, TextThatIsNotUtf8FailsWith1007) {
  EXPECT_EQ(Read(Frame(0x1, "{\"type\":\"\xff\xfe\"}")), std::vector<std::string>{"fail:1007"});
  // A character left unfinished at the message's end.
  EXPECT_EQ(Read(Frame(0x1, "ok\xc3", false) + Frame(0x0, "")),
            std::vector<std::string>{"fail:1007"});
  EXPECT_EQ(Read(Close(1000, "\xff")), std::vector<std::string>{"fail:1007"});
  // At once: a first fragment that cannot start UTF-8 fails before the ping that follows it, and
  // so does a frame cut inside such bytes.
  EXPECT_EQ(Read(Frame(0x1, "ok\xff", false) + Frame(0x9, "after")),
            std::vector<std::string>{"fail:1007"});
  EXPECT_EQ(Read(Frame(0x1, "\xed\xa0\x80").substr(0, 8)),  // a surrogate's first two bytes
            std::vector<std::string>{"fail:1007"});
  // Binary messages are not text.
  EXPECT_EQ(Read(Frame(0x2, "\xff")), std::vector<std::string>{"binary:\xff"});
}

TEST(FrameReaderTest, MessagesOverTheLimitFailWith1009OnceTheHeaderIsRead) {
  EXPECT_EQ(Read(Frame(0x1, std::string(4096, 'a'))),
            std::vector<std::string>{"text:" + std::string(4096, 'a')});
  // The header alone is enough: the payload never has to arrive.
  std::string big = Frame(0x1, std::string(70000, 'x'));
  EXPECT_EQ(Read(big.substr(0, 14)), std::vector<std::string>{"fail:1009"});
  EXPECT_EQ(Read(Frame(0x1, std::string(4097, 'a')).substr(0, 8)),
            std::vector<std::string>{"fail:1009"});
  // Fragments that add up past the limit, like one big frame.
  std::string fragments;
  for (int i = 0; i < 5; ++i)
    fragments += Frame(i == 0 ? 0x1 : 0x0, std::string(1000, ' '), i == 4);
  EXPECT_EQ(Read(fragments), std::vector<std::string>{"fail:1009"});
  // A smaller limit.
  FrameReader small(10);
  EXPECT_EQ(Read(Frame(0x1, "0123456789x"), SIZE_MAX, &small),
            std::vector<std::string>{"fail:1009"});
}

TEST(FrameReaderTest, ACloseFrameEndsTheReading) {
  EXPECT_EQ(Read(Frame(0x8, "") + Frame(0x9, "after")), std::vector<std::string>{"close:0:"});
  EXPECT_EQ(Read(Close(1000, "bye") + Frame(0x1, "after")),
            std::vector<std::string>{"close:1000:bye"});
  EXPECT_EQ(Read(Close(4001, "")), std::vector<std::string>{"close:4001:"});
  EXPECT_EQ(Read(Close(3000, "")), std::vector<std::string>{"close:3000:"});
  EXPECT_EQ(Read(Close(1012, "")), std::vector<std::string>{"close:1012:"});
}

TEST(FrameReaderTest, CloseCodesFollowRfc6455) {
  for (uint16_t code :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 4999}) {
    EXPECT_TRUE(IsValidCloseCode(code)) << code;
  }
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000, 65535}) {
    EXPECT_FALSE(IsValidCloseCode(code)) << code;
  }
}

// RFC 6455 1.3's example: this key is answered with this Sec-WebSocket-Accept.
TEST(UpgradeResponseTest, AnswersTheKeyAsRfc6455Says) {
  EXPECT_EQ(UpgradeResponse("dGhlIHNhbXBsZSBub25jZQ=="),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nServer: pushd\r\n\r\n");
}

}  // namespace
}  // namespace push::edge
