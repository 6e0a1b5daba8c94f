// Requests that are not valid protobuf messages, as a generic client (or a buggy one) sends them:
// every method answers INVALID_ARGUMENT saying which message did not parse and, when protobuf can
// tell, why; in PushStream such a request ends the stream like one that fails validation, after
// the answers to the requests before it.

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/raw_grpc.h"
#include "tests/testing/test_util.h"

namespace push::testing {
namespace {

// A protobuf string field (number 1) holding 0xC3 0x28: not UTF-8.
const std::string kNotUtf8UserId("\x0a\x02\xc3\x28\x12\x01\x31", 7);
// Not protobuf at all (field 31, wire type 7: no such wire type).
const std::string kGarbage("\xff\xff\xff garbage", 12);

TEST(GrpcBadRequestTest, EveryMethodAnswersInvalidArgumentNamingTheMessage) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  struct Case {
    std::string method;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"/push.v1.PushService/Push", "push.v1.PushRequest"},
      {"/push.v1.PushService/Broadcast", "push.v1.BroadcastRequest"},
      {"/push.v1.PushService/DeleteClient", "push.v1.DeleteClientRequest"},
      {"/push.v1.PushService/ListClients", "push.v1.ListClientsRequest"},
      {"/grpc.health.v1.Health/Check", "grpc.health.v1.HealthCheckRequest"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method);
    RawExchangeResult garbage = RawExchange(pushd.grpc_port(), c.method, {kGarbage});
    EXPECT_EQ(garbage.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << garbage.status.error_message();
    EXPECT_TRUE(absl::StrContains(garbage.status.error_message(),
                                  "the request is not a valid " + c.message))
        << garbage.status.error_message();
    EXPECT_TRUE(garbage.responses.empty());
  }
  // Protobuf's reason reaches the caller: the field and what is wrong with it.
  RawExchangeResult utf8 =
      RawExchange(pushd.grpc_port(), "/push.v1.PushService/Push", {kNotUtf8UserId});
  EXPECT_EQ(utf8.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(utf8.status.error_message(), "push.v1.PushRequest.user_id"))
      << utf8.status.error_message();
  EXPECT_TRUE(absl::StrContains(utf8.status.error_message(), "UTF-8"))
      << utf8.status.error_message();
  // None of it was stored, and the server serves on.
  auto stub = pushd.Stub();
  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*stub, "alice", "1", &res).ok());
  EXPECT_EQ(res.seq(), 1u);
}

TEST(GrpcBadRequestTest, PushStreamEndsAtARequestThatDoesNotParseAndEarlierOnesStand) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  v1::PushRequest first;
  first.set_user_id("sam");
  first.set_data(R"({"n":1})");
  v1::PushRequest third = first;
  third.set_data(R"({"n":3})");
  RawExchangeResult stream =
      RawExchange(pushd.grpc_port(), "/push.v1.PushService/PushStream",
                  {first.SerializeAsString(), kGarbage, third.SerializeAsString()});
  EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << stream.status.error_message();
  EXPECT_TRUE(absl::StrContains(stream.status.error_message(), "request #1"))
      << stream.status.error_message();
  EXPECT_TRUE(absl::StrContains(stream.status.error_message(), "push.v1.PushRequest"))
      << stream.status.error_message();
  // The first was answered (seq 1); the one after the bad request was not pushed.
  ASSERT_EQ(stream.responses.size(), 1u);
  v1::PushResponse answered;
  ASSERT_TRUE(answered.ParseFromString(stream.responses[0]));
  EXPECT_EQ(answered.seq(), 1u);
  auto stub = pushd.Stub();
  v1::PushResponse next;
  ASSERT_TRUE(DoPush(*stub, "sam", R"({"n":4})", &next).ok());
  EXPECT_EQ(next.seq(), 2u);
}

}  // namespace
}  // namespace push::testing
