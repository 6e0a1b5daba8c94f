// PushStream and Broadcast, the high-volume RPCs, against a real pushd.

#include <signal.h>

#include <boost/json.hpp>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;

v1::PushRequest Request(const std::string& user, const std::string& data) {
  v1::PushRequest r;
  r.set_user_id(user);
  r.set_data(data);
  return r;
}

TEST(PushStreamTest, AnswersEveryRequestInOrderAndDelivers) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  auto ws = ConnectUser(pushd, "streamer");
  ASSERT_TRUE(ws);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->PushStream(&ctx);
  constexpr int kCount = 2000;
  // Writes all requests first (the server must keep reading while answers wait), then reads.
  std::thread writer([&] {
    for (int i = 0; i < kCount; ++i) {
      std::string user = i % 2 == 0 ? "streamer" : "other";
      if (!stream->Write(Request(user, std::to_string(i)))) break;
    }
    stream->WritesDone();
  });
  v1::PushResponse res;
  int got = 0;
  uint64_t streamer_seq = 0, other_seq = 0;
  while (stream->Read(&res)) {
    uint64_t& expect = got % 2 == 0 ? streamer_seq : other_seq;
    EXPECT_EQ(res.seq(), ++expect) << "response " << got;
    ++got;
  }
  writer.join();
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got, kCount);
  // The connected user got its half, in order.
  for (uint64_t seq = 1; seq <= kCount / 2; ++seq) {
    json::value frame = ws->ReadJson();
    ASSERT_EQ(frame.at("seq"), seq);
    ASSERT_EQ(frame.at("data"), static_cast<int64_t>((seq - 1) * 2));
  }
}

TEST(PushStreamTest, ABadRequestEndsTheStreamNamingItAndEarlierOnesStand) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->PushStream(&ctx);
  ASSERT_TRUE(stream->Write(Request("pat", "1")));
  ASSERT_TRUE(stream->Write(Request("pat", "2")));
  ASSERT_TRUE(stream->Write(Request("pat", "{not json")));
  stream->Write(Request("pat", "4"));
  stream->WritesDone();
  v1::PushResponse res;
  std::vector<uint64_t> seqs;
  while (stream->Read(&res)) seqs.push_back(res.seq());
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("request #2"), std::string::npos) << status.error_message();
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2}));
  // Nothing after the bad request was stored: the next push is seq 3.
  v1::PushResponse next;
  ASSERT_TRUE(DoPush(*stub, "pat", "5", &next).ok());
  EXPECT_EQ(next.seq(), 3u);
}

grpc::Status DoBroadcast(v1::PushService::Stub& stub, const std::vector<std::string>& users,
                         const std::string& data, v1::BroadcastResponse* res,
                         const std::string& message_id = "") {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::BroadcastRequest req;
  for (const auto& u : users) req.add_user_ids(u);
  req.set_data(data);
  req.set_message_id(message_id);
  return stub.Broadcast(&ctx, req, res);
}

TEST(BroadcastTest, EveryUserGetsThePayloadInItsOwnStream) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  ASSERT_TRUE(DoPush(*stub, "amy", "0").ok());  // amy's stream is ahead by one
  auto amy = ConnectUser(pushd, "amy");
  auto ben1 = ConnectUser(pushd, "ben");
  auto ben2 = ConnectUser(pushd, "ben");
  ASSERT_TRUE(amy && ben1 && ben2);
  ASSERT_EQ(amy->ReadJson().at("seq"), 1);  // replay of the earlier push

  v1::BroadcastResponse res;
  grpc::Status status =
      DoBroadcast(*stub, {"amy", "ben", "cat", "ben"}, R"({"news":"all hands"})", &res);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(res.results_size(), 4);
  EXPECT_EQ(res.results(0).seq(), 2u);
  EXPECT_EQ(res.results(1).seq(), 1u);
  EXPECT_EQ(res.results(2).seq(), 1u);
  EXPECT_EQ(res.results(3).seq(), 1u);  // ben listed twice: the same message
  EXPECT_EQ(res.results(0).message_id(), res.results(2).message_id());
  EXPECT_EQ(res.delivered(), 3u);  // amy + two tabs of ben; cat is offline

  for (auto* ws : {amy.get(), ben1.get(), ben2.get()}) {
    json::value frame = ws->ReadJson();
    EXPECT_EQ(frame.at("data"), json::parse(R"({"news":"all hands"})"));
  }
  // ben's tabs got it once: the next frame is the sentinel.
  ASSERT_TRUE(DoPush(*stub, "ben", R"("sentinel")").ok());
  EXPECT_EQ(ben1->ReadJson().at("data"), "sentinel");
  // cat gets it on connect.
  auto cat = WsClient::Connect(pushd.ws_port(), "/ws?user_id=cat");
  ASSERT_TRUE(cat);
  cat->ReadJson();
  EXPECT_EQ(cat->ReadJson().at("data"), json::parse(R"({"news":"all hands"})"));
}

TEST(BroadcastTest, RejectsBadRequestsWithClearMessages) {
  PushdProcess pushd({"--max_message_bytes=100"});
  auto stub = pushd.Stub();
  v1::BroadcastResponse res;
  grpc::Status s = DoBroadcast(*stub, {}, "1", &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("user_ids"), std::string::npos);
  s = DoBroadcast(*stub, {"ok", "not ok"}, "1", &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("user_ids[1]"), std::string::npos) << s.error_message();
  s = DoBroadcast(*stub, {"ok"}, "{", &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = DoBroadcast(*stub, {"ok"}, "\"" + std::string(200, 'x') + "\"", &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("100"), std::string::npos);
  std::vector<std::string> many(10001, "u");
  s = DoBroadcast(*stub, many, "1", &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Nothing was stored by the rejected calls.
  v1::PushResponse next;
  ASSERT_TRUE(DoPush(*stub, "ok", "1", &next).ok());
  EXPECT_EQ(next.seq(), 1u);
}

}  // namespace
}  // namespace push::testing

namespace push::testing {
namespace {

TEST(PushStreamTest, AnIdleOpenStreamDoesNotHoldUpADrain) {
  PushdProcess pushd;  // --drain_timeout=5s
  auto stub = pushd.Stub();
  grpc::ClientContext ctx;
  auto stream = stub->PushStream(&ctx);
  ASSERT_TRUE(stream->Write(Request("idle", "1")));
  v1::PushResponse res;
  ASSERT_TRUE(stream->Read(&res));  // the stream is open and served, then goes quiet
  auto ws = ConnectUser(pushd, "viewer");
  ASSERT_TRUE(ws);
  auto signalled = std::chrono::steady_clock::now();
  pushd.Signal(SIGTERM);
  WsEvent event = ws->Read(std::chrono::milliseconds(8000));
  ASSERT_EQ(event.kind, WsEvent::kClosed);
  EXPECT_EQ(event.close_code, 1001);
  EXPECT_EQ(pushd.Wait(10000), 0);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - signalled)
                  .count();
  EXPECT_LT(took, 3000) << "the quiet stream held the drain to its deadline";
  ctx.TryCancel();
}

}  // namespace
}  // namespace push::testing
