// The send lane (edge/websocket_session.h): a plain connection's frames are written by the
// session itself, next to Beast's reads. Client control frames that reach the server in pieces
// must not leave a WebSocket read pending that holds the lane.

#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

using std::chrono::milliseconds;

// Sends `opcode` ("hi") in two pieces 100 ms apart (split after `cut` bytes), then pushes and
// expects the message; a ping must also get its pong.
void SplitControlFrameThenPush(uint8_t opcode, size_t cut) {
  PushdProcess pushd({"--ping_interval=30s"});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=split");
  ASSERT_TRUE(raw);
  std::string frame = RawClient::EncodeFrame(opcode, "hi");
  ASSERT_TRUE(raw->SendBytes(frame.substr(0, cut)));
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(raw->SendBytes(frame.substr(cut)));
  bool pong = opcode != 0x9;
  if (!pong) {
    auto answer = raw->ReadFrame(milliseconds(3000));
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->opcode, 0xA);
    EXPECT_EQ(answer->payload, "hi");
  }
  for (int i = 0; i < 3; ++i) {
    grpc::Status s = DoPush(*stub, "split", std::to_string(i));
    ASSERT_TRUE(s.ok()) << s.error_message();
    auto message = raw->ReadFrame(milliseconds(3000));
    ASSERT_TRUE(message) << "message " << i << " not delivered";
    EXPECT_EQ(message->opcode, 0x1);
    EXPECT_NE(message->payload.find("\"data\":" + std::to_string(i)), std::string::npos)
        << message->payload;
  }
}

TEST(SendLaneTest, PingInTwoPiecesIsAnsweredAndDeliveryGoesOn) {
  SplitControlFrameThenPush(0x9, 1);
  SplitControlFrameThenPush(0x9, 4);
}

TEST(SendLaneTest, PongInTwoPiecesDoesNotHoldDelivery) {
  SplitControlFrameThenPush(0xA, 1);
  SplitControlFrameThenPush(0xA, 3);
}

}  // namespace
}  // namespace push::testing
