// The send lane (edge/websocket_session.h): a plain connection's frames are written by the
// session itself, next to Beast's reads. Client control frames that reach the server in pieces
// must not leave a WebSocket read pending that holds the lane. And the bursts of a gRPC queue
// thread (common/base/write_batch.h): frames and answers held for the end of a burst all go out.

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

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

// Many unary pushes in flight on one channel reach the server in bursts (one read, many calls):
// every answer comes, with the seq of its user's stream, and every connected user gets its
// messages in order. A frame or an answer held for the end of a burst and never sent would stall
// this test.
TEST(SendLaneTest, ManyPushesInFlightAreAllAnsweredAndDeliveredInOrder) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  constexpr int kSenders = 8, kUsersPerSender = 2, kPushesPerUser = 60;
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int u = 0; u < kSenders * kUsersPerSender; ++u) {
    clients.push_back(ConnectUser(pushd, "burst" + std::to_string(u)));
    ASSERT_TRUE(clients.back()) << "user " << u;
  }
  auto stub = pushd.Stub();  // one channel: the senders' calls share its connection
  std::vector<std::thread> senders;
  std::vector<std::string> failures(kSenders);
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kPushesPerUser * kUsersPerSender && failures[t].empty(); ++i) {
        int u = t * kUsersPerSender + i % kUsersPerSender;
        v1::PushRequest request;
        request.set_user_id("burst" + std::to_string(u));
        request.set_data(std::to_string(i / kUsersPerSender));
        v1::PushResponse response;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
        grpc::Status status = stub->Push(&context, request, &response);
        uint64_t want = static_cast<uint64_t>(i / kUsersPerSender) + 1;
        if (!status.ok() || response.seq() != want) {
          failures[t] = "user " + std::to_string(u) + " push " + std::to_string(i) + ": " +
                        status.error_message() + " seq " + std::to_string(response.seq());
        }
      }
    });
  }
  for (auto& sender : senders) sender.join();
  for (const std::string& failure : failures) EXPECT_EQ(failure, "");
  for (int u = 0; u < kSenders * kUsersPerSender; ++u) {
    for (int seq = 1; seq <= kPushesPerUser; ++seq) {
      boost::json::value frame = clients[u]->ReadJson(milliseconds(5000));
      ASSERT_TRUE(frame.is_object()) << "user " << u << " seq " << seq;
      ASSERT_EQ(frame.at("seq"), seq) << "user " << u;
      ASSERT_EQ(frame.at("data"), seq - 1) << "user " << u;
    }
  }
}

}  // namespace
}  // namespace push::testing
