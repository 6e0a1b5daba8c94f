// Bad input from backends (gRPC) and browsers (HTTP/WebSocket) against a real pushd: every
// rejection has the contract's status or close code and a message that says what was wrong,
// and nothing a misbehaving peer sends hurts the process or the other connections.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/text.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::steady_clock;

// Pushes to `user` and checks that `ws` receives exactly that data: the proof that a
// connection (and the process) is still healthy.
void ExpectHealthy(const PushdProcess& pushd, WsClient& ws, const std::string& user,
                   const std::string& data) {
  auto stub = pushd.Stub();
  v1::PushResponse res;
  grpc::Status s = DoPush(*stub, user, data, &res);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(res.delivered(), 1u);
  json::value frame = ws.ReadJson();
  EXPECT_EQ(frame.at("type"), "message");
  EXPECT_EQ(frame.at("data"), json::parse(data));
}

// Sends `bytes` on a fresh TCP connection to the edge port and returns everything the server
// writes back until it closes the connection (or 5 s pass).
std::string SendRawAndReadAll(int port, const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())) {
    auto deadline = steady_clock::now() + std::chrono::seconds(5);
    while (steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) < 0) break;
      if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char chunk[4096];
      ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) break;
      out.append(chunk, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

// Reads raw frames until a close frame, EOF or timeout; returns the close frame if one came.
std::optional<RawClient::Frame> ReadUntilClose(RawClient& raw) {
  for (int i = 0; i < 100; ++i) {
    std::optional<RawClient::Frame> f = raw.ReadFrame(std::chrono::milliseconds(5000));
    if (!f) return std::nullopt;
    if (f->opcode == 0x8) return f;
  }
  return std::nullopt;
}

// ---- gRPC ------------------------------------------------------------------------------------

TEST(BadInputTest, PushRejectsInvalidUserIds) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  for (const std::string& user :
       {std::string(), std::string(129, 'a'), std::string("a b"), std::string("\xc3\xbc"),
        std::string("a/b"), std::string("a\nb")}) {
    SCOPED_TRACE("user_id='" + user + "'");
    grpc::Status s = DoPush(*stub, user, "1");
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Contains(s.error_message(), "user_id")) << s.error_message();
  }
  // 128 bytes of every allowed character class is fine.
  std::string longest = "aZ09._:@-" + std::string(119, 'x');
  ASSERT_EQ(longest.size(), 128u);
  v1::PushResponse res;
  grpc::Status ok = DoPush(*stub, longest, "1", &res);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(res.seq(), 1u);
}

TEST(BadInputTest, PushRejectsDataThatIsNotOneJsonValue) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  for (const std::string& data :
       {std::string("{"), std::string(""), std::string("nul"), std::string(R"({"a":1}x)"),
        std::string("1 2"), std::string("{'a':1}"), std::string("/*c*/1"),
        std::string("\"\xff\xfe\""), std::string("[1,]")}) {
    SCOPED_TRACE("data='" + data + "'");
    grpc::Status s = DoPush(*stub, "alice", data);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Contains(s.error_message(), "data")) << s.error_message();
    EXPECT_TRUE(Contains(s.error_message(), "JSON")) << s.error_message();
  }
  // Rejected pushes were not appended: the first good one is seq 1, and a connecting client
  // is told the stream is at 1.
  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*stub, "alice", R"( {"ok":true} )", &res).ok());
  EXPECT_EQ(res.seq(), 1u);
  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=alice&since=0");
  ASSERT_TRUE(ws);
  EXPECT_EQ(ws->ReadJson().at("seq"), 1);
  json::value replayed = ws->ReadJson();
  EXPECT_EQ(replayed.at("seq"), 1);
  EXPECT_EQ(replayed.at("data"), json::parse(R"({"ok":true})"));
}

TEST(BadInputTest, PushRejectsDataOverMaxMessageBytesNamingTheLimit) {
  PushdProcess pushd({"--max_message_bytes=1024"});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  std::string over = JsonString(1023, 'x');
  ASSERT_EQ(over.size(), 1025u);
  grpc::Status s = DoPush(*stub, "bob", over);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(s.error_message(), "1024")) << s.error_message();
  EXPECT_TRUE(Contains(s.error_message(), "1025")) << s.error_message();

  // Exactly at the limit is accepted and delivered verbatim.
  auto ws = ConnectUser(pushd, "bob");
  ASSERT_TRUE(ws);
  std::string at = JsonString(1022, 'z');
  ASSERT_EQ(at.size(), 1024u);
  v1::PushResponse res;
  grpc::Status ok = DoPush(*stub, "bob", at, &res);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(res.seq(), 1u);
  EXPECT_EQ(ws->ReadJson().at("data"), json::parse(at));
}

// The contract gives INVALID_ARGUMENT, with a message naming the limit, for any data over
// --max_message_bytes, not only for data within some transport slack of it. 64 KiB is well
// under gRPC's usual 4 MiB receive limit.
TEST(BadInputTest, PushFarOverTheLimitIsStillInvalidArgumentNamingTheLimit) {
  PushdProcess pushd({"--max_message_bytes=1024"});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  std::string way_over = JsonString(64 * 1024, 'y');
  grpc::Status big = DoPush(*stub, "bob", way_over);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << big.error_message();
  EXPECT_TRUE(Contains(big.error_message(), "1024")) << big.error_message();
  // The process is fine afterwards.
  EXPECT_TRUE(DoPush(*stub, "bob", "1").ok());
}

TEST(BadInputTest, PushRejectsBadMessageIds) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  for (const std::string& id :
       {std::string(129, 'm'), std::string("a b"), std::string("a\"b"), std::string("a\\b"),
        std::string("\xc3\xbc"), std::string("a\tb")}) {
    SCOPED_TRACE("message_id='" + id + "'");
    grpc::Status s = DoPush(*stub, "carol", "1", nullptr, id);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Contains(s.error_message(), "message_id")) << s.error_message();
  }
  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*stub, "carol", "1", &res, std::string(128, 'm')).ok());
  EXPECT_EQ(res.message_id(), std::string(128, 'm'));
  EXPECT_EQ(res.seq(), 1u);
}

TEST(BadInputTest, ListClientsRejectsOversizedPageAndForeignPageToken) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  grpc::Status s;
  DoList(*stub, "", 1001, "", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(s.error_message(), "page_size")) << s.error_message();
  EXPECT_TRUE(Contains(s.error_message(), "1000")) << s.error_message();

  DoList(*stub, "", 1000, "", &s);
  EXPECT_TRUE(s.ok()) << s.error_message();

  for (const std::string& token : {std::string("garbage"), std::string("!!!not-base64!!!"),
                                   std::string("djEKYWxpY2U")}) {  // "v1\nalice": no conn part
    SCOPED_TRACE("page_token='" + token + "'");
    DoList(*stub, "", 0, token, &s);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Contains(s.error_message(), "page_token")) << s.error_message();
  }

  DoList(*stub, "a b", 0, "", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(s.error_message(), "user_id")) << s.error_message();
}

TEST(BadInputTest, DeleteClientRejectsLongReasonAndKeepsTheConnection) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto ws = ConnectUser(pushd, "dora");
  ASSERT_TRUE(ws);

  grpc::Status s = DoDelete(*stub, "dora", nullptr, "", false, std::string(121, 'r'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(s.error_message(), "reason")) << s.error_message();
  EXPECT_TRUE(Contains(s.error_message(), "120")) << s.error_message();

  s = DoDelete(*stub, "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(s.error_message(), "user_id")) << s.error_message();

  // The rejected deletes closed nothing.
  ExpectHealthy(pushd, *ws, "dora", R"({"still":"here"})");
  EXPECT_EQ(DoList(*stub, "dora").total(), 1u);

  // 120 bytes is allowed and arrives as the close reason.
  std::string reason(120, 'r');
  v1::DeleteClientResponse res;
  s = DoDelete(*stub, "dora", &res, "", false, reason);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(res.closed(), 1u);
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed);
  EXPECT_EQ(event.close_code, 1000);
  EXPECT_EQ(event.close_reason, reason);
}

// ---- HTTP upgrade ----------------------------------------------------------------------------

TEST(BadInputTest, UpgradeWithoutValidUserOrSinceIsHttp400) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  struct Case {
    std::string target;
    std::string says;  // the body must mention this
  };
  for (const Case& c : std::vector<Case>{{"/ws", "user_id"},
                                         {"/ws?user_id=", "user_id"},
                                         {"/ws?userId=alice", "user_id"},
                                         {"/ws?user_id=a%20b", "user_id"},
                                         {"/ws?user_id=" + std::string(129, 'a'), "user_id"},
                                         {"/ws?user_id=%C3%BC", "user_id"},
                                         {"/ws?user_id=alice&since=abc", "since"},
                                         {"/ws?user_id=alice&since=-1", "since"},
                                         {"/getPushNews", "userId"}}) {
    SCOPED_TRACE(c.target);
    int status = 0;
    auto ws = WsClient::Connect(pushd.ws_port(), c.target, {}, &status);
    EXPECT_FALSE(ws);
    EXPECT_EQ(status, 400);
    HttpResponse res = HttpRequest(pushd.ws_port(), "GET", c.target, UpgradeHeaders());
    EXPECT_EQ(res.status, 400);
    EXPECT_TRUE(Contains(res.body, c.says)) << res.body;
  }
  EXPECT_EQ(DoList(*pushd.Stub()).total(), 0u);
}

TEST(BadInputTest, PlainGetOfWsWithoutUpgradeHeadersIs400) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  HttpResponse res = HttpRequest(pushd.ws_port(), "GET", "/ws?user_id=alice");
  EXPECT_EQ(res.status, 400);
  EXPECT_TRUE(Contains(res.body, "pgrade")) << res.body;
  res = HttpRequest(pushd.ws_port(), "POST", "/ws?user_id=alice", UpgradeHeaders(), "x");
  EXPECT_EQ(res.status, 400);
  // An upgrade without Sec-WebSocket-Key is malformed too.
  res = HttpRequest(
      pushd.ws_port(), "GET", "/ws?user_id=alice",
      {{"Connection", "Upgrade"}, {"Upgrade", "websocket"}, {"Sec-WebSocket-Version", "13"}});
  EXPECT_EQ(res.status, 400);
  EXPECT_EQ(DoList(*pushd.Stub()).total(), 0u);
}

TEST(BadInputTest, GarbageInsteadOfHttpDoesNotDisturbOthers) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto healthy = ConnectUser(pushd, "erin");
  ASSERT_TRUE(healthy);

  // A TLS ClientHello on the plain port, binary noise, and an oversized header.
  std::string reply = SendRawAndReadAll(
      pushd.ws_port(), std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) +
                           std::string(64, '\0') + "\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
  reply = SendRawAndReadAll(pushd.ws_port(), "\r\n\r\n\r\n\xff\xfe garbage \x01\x02\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 4", 0), 0u) << reply;
  reply = SendRawAndReadAll(pushd.ws_port(), "GET /ws?user_id=x HTTP/1.1\r\nX-Big: " +
                                                 std::string(16384, 'a') + "\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 431", 0), 0u) << reply.substr(0, 200);

  ExpectHealthy(pushd, *healthy, "erin", R"("after garbage")");
  EXPECT_EQ(HttpRequest(pushd.ws_port(), "GET", "/healthz").status, 200);
}

// ---- WebSocket frames from the client --------------------------------------------------------

TEST(BadInputTest, BinaryFrameClosesWith1003) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto ws = ConnectUser(pushd, "fred");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(ws->SendBinary(R"({"type":"ack","seq":0})"));
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed) << event.data;
  EXPECT_EQ(event.close_code, 1003);
  EXPECT_FALSE(event.close_reason.empty());
  auto stub = pushd.Stub();
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "fred").total() == 0; }));
}

TEST(BadInputTest, TextFramesThatAreNotClientFramesCloseWith1008) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  for (const std::string& text :
       {std::string("hello"), std::string(R"({"type":"nope"})"), std::string("[1,2]"),
        std::string(R"({"seq":1})"), std::string(R"({"type":"ack"})"),
        std::string(R"({"type":"ack","seq":"x"})"), std::string("")}) {
    SCOPED_TRACE("frame='" + text + "'");
    auto ws = ConnectUser(pushd, "gail");
    ASSERT_TRUE(ws);
    ASSERT_TRUE(ws->SendText(text));
    WsEvent event = ws->Read();
    ASSERT_EQ(event.kind, WsEvent::kClosed) << event.data;
    EXPECT_EQ(event.close_code, 1008);
    EXPECT_FALSE(event.close_reason.empty());
  }
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "gail").total() == 0; }));
}

TEST(BadInputTest, ValidAckKeepsTheConnectionOpen) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto ws = ConnectUser(pushd, "hal");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(ws->SendText(R"({"type":"ack","seq":0})"));
  ExpectHealthy(pushd, *ws, "hal", "1");
  ASSERT_TRUE(ws->SendText(R"({"type":"ack","seq":1})"));
  ExpectHealthy(pushd, *ws, "hal", "2");
}

TEST(BadInputTest, FrameOver4096BytesClosesWith1009) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto ws = ConnectUser(pushd, "ida");
  ASSERT_TRUE(ws);
  // A well-formed ack padded past the limit: only the size is wrong.
  std::string big = R"({"type":"ack","seq":0,"pad":")" + std::string(4100, 'p') + "\"}";
  ASSERT_TRUE(ws->SendText(big));
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed) << event.data;
  EXPECT_EQ(event.close_code, 1009);
  auto stub = pushd.Stub();
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "ida").total() == 0; }));
}

// Protocol violations written by hand; RFC 6455 says the server fails the connection with 1002.
struct RawCase {
  const char* name;
  std::string bytes;
  uint16_t code;
};

TEST(BadInputTest, ProtocolViolationsCloseWith1002AndLeaveOthersAlone) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto healthy = ConnectUser(pushd, "jane");
  ASSERT_TRUE(healthy);
  const std::string ack = R"({"type":"ack","seq":0})";
  std::vector<RawCase> cases = {
      {"unmasked frame", RawClient::EncodeFrame(0x1, ack, /*mask=*/false), 1002},
      {"reserved bit 1", RawClient::EncodeFrame(0x1, ack, true, true, 4), 1002},
      {"reserved bit 3", RawClient::EncodeFrame(0x1, ack, true, true, 1), 1002},
      {"reserved opcode 0x3", RawClient::EncodeFrame(0x3, ack), 1002},
      {"reserved control opcode 0xB", RawClient::EncodeFrame(0xB, ""), 1002},
      {"continuation without start", RawClient::EncodeFrame(0x0, ack), 1002},
      {"fragmented ping", RawClient::EncodeFrame(0x9, "x", true, /*fin=*/false), 1002},
      {"ping over 125 bytes", RawClient::EncodeFrame(0x9, std::string(126, 'p')), 1002},
      {"new message inside a fragmented one",
       RawClient::EncodeFrame(0x1, "{", true, false) + RawClient::EncodeFrame(0x1, "}"), 1002},
  };
  for (const RawCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto raw = RawClient::Connect(pushd.ws_port());
    ASSERT_TRUE(raw);
    ASSERT_EQ(raw->Upgrade("/ws?user_id=kyle"), 101);
    auto welcome = raw->ReadFrame();
    ASSERT_TRUE(welcome);
    EXPECT_EQ(welcome->opcode, 0x1);
    ASSERT_TRUE(raw->SendBytes(c.bytes));
    std::optional<RawClient::Frame> close = ReadUntilClose(*raw);
    ASSERT_TRUE(close) << "no close frame; eof=" << raw->eof();
    EXPECT_EQ(close->close_code(), c.code);
    // The server then ends the TCP connection, and the client closes its side.
    for (int i = 0; i < 10 && !raw->eof(); ++i) raw->ReadFrame(std::chrono::milliseconds(1000));
    EXPECT_TRUE(raw->eof());
    raw.reset();
    EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "kyle").total() == 0; }));
  }
  ExpectHealthy(pushd, *healthy, "jane", R"({"survived":true})");
}

TEST(BadInputTest, InvalidUtf8TextFrameIsRejected) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=lena");
  ASSERT_TRUE(raw);
  ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0x1, "{\"type\":\"\xff\xfe\"}")));
  std::optional<RawClient::Frame> close = ReadUntilClose(*raw);
  ASSERT_TRUE(close);
  // RFC 6455 7.4.1 names 1007 for non-UTF-8 text; the contract's 1008 (not a valid client
  // frame) would also be acceptable.
  EXPECT_TRUE(close->close_code() == 1007 || close->close_code() == 1008) << close->close_code();
}

TEST(BadInputTest, FragmentedValidFrameIsAcceptedButOversizedFragmentsAreNot) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=mona");
  ASSERT_TRUE(raw);
  // An ack split into three fragments with a ping in between is legal (RFC 6455 5.4).
  ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0x1, R"({"type":)", true, false) +
                             RawClient::EncodeFrame(0x0, R"("ack",)", true, false) +
                             RawClient::EncodeFrame(0x9, "mid") +
                             RawClient::EncodeFrame(0x0, R"("seq":0})", true, true)));
  std::optional<RawClient::Frame> pong = raw->ReadFrame();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, 0xA);
  EXPECT_EQ(pong->payload, "mid");
  ASSERT_TRUE(DoPush(*stub, "mona", R"("after fragments")").ok());
  std::optional<RawClient::Frame> msg = raw->ReadFrame();
  ASSERT_TRUE(msg);
  ASSERT_EQ(msg->opcode, 0x1) << msg->payload;
  EXPECT_EQ(json::parse(msg->payload).at("data"), "after fragments");

  // Fragments that add up past 4096 bytes close with 1009 like one big frame.
  std::string bytes;
  for (int i = 0; i < 5; ++i) {
    bytes += RawClient::EncodeFrame(i == 0 ? 0x1 : 0x0, std::string(1000, ' '), true, i == 4);
  }
  ASSERT_TRUE(raw->SendBytes(bytes));
  std::optional<RawClient::Frame> close = ReadUntilClose(*raw);
  ASSERT_TRUE(close);
  EXPECT_EQ(close->close_code(), 1009);
}

TEST(BadInputTest, ClientCloseFrameIsEchoedAndConnectionEnds) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=nina");
  ASSERT_TRUE(raw);
  ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0x8, std::string("\x03\xe8", 2) + "bye")));
  std::optional<RawClient::Frame> close = ReadUntilClose(*raw);
  ASSERT_TRUE(close);
  EXPECT_EQ(close->close_code(), 1000);
  // The server closes the TCP connection first (RFC 6455 7.1.1); then the client does.
  for (int i = 0; i < 10 && !raw->eof(); ++i) raw->ReadFrame(std::chrono::milliseconds(1000));
  EXPECT_TRUE(raw->eof());
  raw.reset();
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "nina").total() == 0; }));
}

// Between messages the server waits for the socket to become readable and reads frame by frame
// (edge/websocket_session.h): whatever arrives together in one TCP segment, or in pieces, is
// all handled at once, and a stalled reader is never left with a frame it has not looked at.
TEST(BadInputTest, FramesThatArriveTogetherOrInPiecesAreAllHandledAtOnce) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  const std::string ack = RawClient::EncodeFrame(0x1, R"({"type":"ack","seq":0})");
  auto open = [&](const std::string& user) {
    auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=" + user);
    EXPECT_TRUE(raw);
    return raw;
  };
  const auto quick = std::chrono::milliseconds(2000);
  // The next frame is a pong with `payload`, or a close with `code`.
  auto expect_pong = [&](RawClient& raw, const std::string& payload) {
    std::optional<RawClient::Frame> f = raw.ReadFrame(quick);
    ASSERT_TRUE(f) << payload;
    EXPECT_EQ(f->opcode, 0xA);
    EXPECT_EQ(f->payload, payload);
  };
  auto expect_close = [&](RawClient& raw, uint16_t code) {
    std::optional<RawClient::Frame> f = raw.ReadFrame(quick);
    ASSERT_TRUE(f) << code;
    EXPECT_EQ(f->opcode, 0x8);
    EXPECT_EQ(f->close_code(), code);
  };
  {
    SCOPED_TRACE("two pings in one write: two pongs");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    ASSERT_TRUE(
        raw->SendBytes(RawClient::EncodeFrame(0x9, "one") + RawClient::EncodeFrame(0x9, "two")));
    expect_pong(*raw, "one");
    expect_pong(*raw, "two");
  }
  {
    SCOPED_TRACE("an ack, a pong and a ping in one write: the ping is answered");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    ASSERT_TRUE(raw->SendBytes(ack + RawClient::EncodeFrame(0xA, "p") +
                               RawClient::EncodeFrame(0x9, "after")));
    expect_pong(*raw, "after");
  }
  {
    SCOPED_TRACE("an ack and a close in one write: the close is echoed");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    ASSERT_TRUE(raw->SendBytes(ack + RawClient::EncodeFrame(0x8, std::string("\x03\xe8", 2))));
    expect_close(*raw, 1000);
  }
  {
    SCOPED_TRACE("an ack and a frame that is not a client frame in one write: 1008");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    ASSERT_TRUE(raw->SendBytes(ack + RawClient::EncodeFrame(0x1, "nope")));
    expect_close(*raw, 1008);
  }
  {
    SCOPED_TRACE("a ping written one byte at a time, then a text frame split in its header");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    for (char c : RawClient::EncodeFrame(0x9, "slow")) {
      ASSERT_TRUE(raw->SendBytes(std::string(1, c)));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    expect_pong(*raw, "slow");
    std::string bad = RawClient::EncodeFrame(0x1, "still not a client frame");
    ASSERT_TRUE(raw->SendBytes(bad.substr(0, 3)));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(raw->SendBytes(bad.substr(3)));
    expect_close(*raw, 1008);
  }
  {
    SCOPED_TRACE(
        "a 300-byte ack (16-bit length) split inside its length and its mask, then a ping");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    std::string padded = RawClient::EncodeFrame(
        0x1, R"({"type":"ack","seq":0,"pad":")" + std::string(260, 'p') + "\"}");
    ASSERT_EQ(static_cast<uint8_t>(padded[1]) & 0x7f, 126);
    for (size_t cut : {size_t{3}, size_t{6}}) {
      ASSERT_TRUE(raw->SendBytes(padded.substr(0, cut)));
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      ASSERT_TRUE(raw->SendBytes(padded.substr(cut)));
    }
    ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0x9, "still reading")));
    expect_pong(*raw, "still reading");
  }
  {
    SCOPED_TRACE("a 64-bit length split inside the length field: 1009 before the payload");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    std::string huge = RawClient::EncodeFrame(0x1, std::string(70000, 'x'));
    ASSERT_EQ(static_cast<uint8_t>(huge[1]) & 0x7f, 127);
    ASSERT_TRUE(raw->SendBytes(huge.substr(0, 5)));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    ASSERT_TRUE(raw->SendBytes(huge.substr(5, 9)));  // the rest of the header, no payload
    expect_close(*raw, 1009);
  }
  {
    SCOPED_TRACE("an unmasked pong: 1002, like any unmasked client frame");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0xA, "p", /*mask=*/false)));
    expect_close(*raw, 1002);
  }
  {
    SCOPED_TRACE("a pong over 125 bytes: 1002");
    auto raw = open("olga");
    ASSERT_TRUE(raw);
    ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0xA, std::string(126, 'p'))));
    expect_close(*raw, 1002);
  }
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "olga").total() == 0; }));
}

// A client that pings without reading its pongs for a while: the server reads on and answers
// every ping it can (a pong waiting behind a full socket is replaced by the next one, RFC 6455
// 5.5.3: SendQueueTest), what waits for that client stays bounded, the process serves everyone
// else meanwhile, and the last pong the client reads answers its last ping.
TEST(BadInputTest, APingFloodFromAClientThatDoesNotReadStallsNoOne) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto healthy = ConnectUser(pushd, "quinn");
  ASSERT_TRUE(healthy);
  auto raw = RawClient::Connect(pushd.ws_port());
  ASSERT_TRUE(raw);
  ASSERT_EQ(raw->Upgrade("/ws?user_id=rita"), 101);
  ASSERT_TRUE(raw->ReadFrame());  // the welcome
  // 20,000 pings of 125 bytes, about 2.5 MB each way.
  constexpr int kPings = 20000;
  auto payload = [](int i) {
    std::string p = "ping " + std::to_string(i) + " ";
    return p + std::string(125 - p.size(), 'x');
  };
  for (int i = 0; i < kPings; i += 1000) {
    std::string batch;
    for (int j = i; j < i + 1000; ++j) batch += RawClient::EncodeFrame(0x9, payload(j));
    ASSERT_TRUE(raw->SendBytes(batch));
  }
  ExpectHealthy(pushd, *healthy, "quinn", R"({"during":"a ping flood"})");
  // At most a pong being written and the latest one wait in the server for this client.
  EXPECT_TRUE(WaitFor([&] {
    v1::ListClientsResponse list = DoList(*stub, "rita");
    return list.clients_size() == 1 && list.clients(0).queued_bytes() <= 2 * 125;
  }));
  // The client reads: pongs only, the last one answering the last ping.
  int pongs = 0;
  std::string last;
  for (int i = 0; i < kPings && last != payload(kPings - 1); ++i) {
    std::optional<RawClient::Frame> f = raw->ReadFrame(std::chrono::milliseconds(5000));
    ASSERT_TRUE(f) << "after " << pongs << " pongs, the last " << last;
    ASSERT_EQ(f->opcode, 0xA);
    ++pongs;
    last = f->payload;
  }
  EXPECT_EQ(last, payload(kPings - 1));
  EXPECT_LE(pongs, kPings);
  EXPECT_EQ(DoList(*stub, "rita").clients_size(), 1);
}

// Once the server has failed a connection (sent its close frame and FIN), the connection is
// over: it must leave ListClients and stop counting as `delivered`, whether the session or the
// frame reader found the fault, and even while the misbehaving peer keeps its end of the socket
// open.
TEST(BadInputTest, FailedConnectionLeavesListClientsAtOnceEvenIfPeerLingers) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  const std::string ack = R"({"type":"ack","seq":0})";
  std::vector<RawCase> cases = {
      {"binary frame", RawClient::EncodeFrame(0x2, ack), 1003},
      {"not a client frame", RawClient::EncodeFrame(0x1, "hello"), 1008},
      {"unmasked frame", RawClient::EncodeFrame(0x1, ack, false), 1002},
      {"frame over 4096 bytes", RawClient::EncodeFrame(0x1, std::string(5000, ' ')), 1009},
  };
  for (const RawCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::string user = "linger" + std::to_string(c.code);
    auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=" + user);
    ASSERT_TRUE(raw);
    ASSERT_TRUE(raw->SendBytes(c.bytes));
    std::optional<RawClient::Frame> close = ReadUntilClose(*raw);
    ASSERT_TRUE(close);
    EXPECT_EQ(close->close_code(), c.code);
    EXPECT_TRUE(
        WaitFor([&] { return DoList(*stub, user).total() == 0; }, std::chrono::milliseconds(2000)))
        << "still listed 2 s after the server failed the connection";
    v1::PushResponse res;
    ASSERT_TRUE(DoPush(*stub, user, "1", &res).ok());
    EXPECT_EQ(res.delivered(), 0u) << "a push was handed to a failed connection";
  }
}

// HTTP allows any byte above 0x7F in a header; ListClients shows the User-Agent in a protobuf
// string, which must be UTF-8 or the caller cannot decode the response. Found by upgrade_fuzz.
TEST(BadInputTest, UserAgentThatIsNotUtf8DoesNotBreakListClients) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  struct Case {
    std::string user, header, shown;
  };
  const std::string long_prefix(255, 'a');
  std::vector<Case> cases = {
      {"ua-latin1", "caf\xe9 browser", "caf? browser"},
      {"ua-cut", long_prefix + "\xc3\xa9tail", long_prefix},  // 2-byte char across byte 256
      {"ua-utf8", "Mozilla/5.0 \xe2\x82\xac", "Mozilla/5.0 \xe2\x82\xac"},
  };
  std::vector<std::unique_ptr<RawClient>> clients;
  for (const Case& c : cases) {
    auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=" + c.user,
                                        {{"User-Agent", c.header}});
    ASSERT_TRUE(raw);
    clients.push_back(std::move(raw));
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.user);
    grpc::Status status;
    v1::ListClientsResponse list = DoList(*stub, c.user, 0, "", &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(list.clients_size(), 1);
    EXPECT_EQ(list.clients(0).user_agent(), c.shown);
  }
  grpc::Status status;
  EXPECT_EQ(DoList(*stub, "", 0, "", &status).total(), 3u);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST(BadInputTest, ProcessSurvivesAllOfItAtOnce) {
  PushdProcess pushd({"--max_message_bytes=1024"});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto healthy = ConnectUser(pushd, "olga");
  ASSERT_TRUE(healthy);
  for (int round = 0; round < 3; ++round) {
    EXPECT_FALSE(DoPush(*stub, "", "1").ok());
    EXPECT_FALSE(DoPush(*stub, "olga", "{").ok());
    EXPECT_FALSE(DoPush(*stub, "olga", std::string(2000, '1')).ok());
    EXPECT_EQ(HttpRequest(pushd.ws_port(), "GET", "/ws").status, 400);
    SendRawAndReadAll(pushd.ws_port(), std::string("\x00\x01\x02\x03\r\n\r\n", 8));
    if (auto ws = ConnectUser(pushd, "olga-bad")) {
      ws->SendBinary("x");
      ws->Read();
    }
    if (auto ws = ConnectUser(pushd, "olga-bad")) {
      ws->SendText(std::string(5000, 'x'));
      ws->Read();
    }
    if (auto raw = RawClient::Connect(pushd.ws_port())) {
      if (raw->Upgrade("/ws?user_id=olga-bad") == 101) {
        raw->SendBytes(RawClient::EncodeFrame(0x1, "x", false));
        ReadUntilClose(*raw);
      }
    }
    if (auto raw = RawClient::Connect(pushd.ws_port())) {
      // Upgrade, then vanish in the middle of a frame.
      if (raw->Upgrade("/ws?user_id=olga-bad") == 101) {
        raw->SendBytes(RawClient::EncodeFrame(0x1, std::string(300, 'x')).substr(0, 50));
      }
    }
  }
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "olga-bad").total() == 0; }));
  ExpectHealthy(pushd, *healthy, "olga", R"({"final":"push"})");
  EXPECT_EQ(HttpRequest(pushd.ws_port(), "GET", "/healthz").status, 200);
}

}  // namespace
}  // namespace push::testing
