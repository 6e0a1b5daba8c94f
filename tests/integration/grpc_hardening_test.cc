// gRPC hardening against a real pushd: server reflection only when --grpc_reflection is on,
// keepalive enforcement (a client that pings too often is sent away, others keep working), the
// receive limit, and compressed requests.

#include <grpc/grpc.h>
#include <grpc/support/log.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>

#include <atomic>
#include <boost/json.hpp>
#include <cstdio>

#include "gtest/gtest.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/raw_grpc.h"
#include "tests/testing/test_util.h"
#include "tests/testing/text.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

constexpr char kReflectionMethod[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

// ServerReflectionRequest{list_services: "*"}: field 7, a string.
const std::string kListServices("\x3a\x01*", 3);

TEST(GrpcHardeningTest, ReflectionOnListsPushService) {
  PushdProcess pushd({"--grpc_reflection=true"});
  ASSERT_TRUE(pushd.started());
  std::string response;
  grpc::Status status =
      RawUnaryCall(pushd.grpc_port(), kReflectionMethod, kListServices, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_NE(response.find("push.v1.PushService"), std::string::npos);
}

TEST(GrpcHardeningTest, ReflectionOffAnswersUnimplementedAndTheRestServes) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--grpc_reflection=false"},
                                               std::vector<std::string>{"--nogrpc_reflection"}}) {
    PushdProcess pushd(args);
    ASSERT_TRUE(pushd.started());
    std::string response;
    grpc::Status status =
        RawUnaryCall(pushd.grpc_port(), kReflectionMethod, kListServices, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED)
        << args[0] << ": " << status.error_message();
    EXPECT_TRUE(response.empty());
    // Health and PushService are still there.
    status = RawUnaryCall(pushd.grpc_port(), "/grpc.health.v1.Health/Check", "", &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response, std::string("\x08\x01", 2));  // SERVING
    EXPECT_TRUE(DoPush(*pushd.Stub(), "alice", "1").ok());
  }
}

// gRPC's client logs the GOAWAY it gets; the test listens for the server's reason. (gRPC has
// no public way back to its own log function, so this one also writes every line to stderr.)
std::atomic<bool> g_too_many_pings{false};

void RecordTooManyPings(gpr_log_func_args* args) {
  if (std::string_view(args->message).find("too_many_pings") != std::string_view::npos) {
    g_too_many_pings.store(true);
  }
  std::fprintf(stderr, "%s %s:%d] %s\n", gpr_log_severity_string(args->severity), args->file,
               args->line, args->message);
}

TEST(GrpcHardeningTest, ClientPingingTooOftenGetsGoawayWhileOthersKeepWorking) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  const std::string target = "127.0.0.1:" + std::to_string(pushd.grpc_port());
  auto normal_channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto normal = v1::PushService::NewStub(normal_channel);
  ASSERT_TRUE(DoPush(*normal, "bob", "1").ok());

  g_too_many_pings.store(false);
  gpr_set_log_function(RecordTooManyPings);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  auto eager_channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  auto eager = v1::PushService::NewStub(eager_channel);
  ASSERT_TRUE(DoPush(*eager, "alice", "1").ok());
  ASSERT_EQ(eager_channel->GetState(false), GRPC_CHANNEL_READY);

  // The server counts pings that come sooner than it allows and closes the connection with
  // GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"): the channel leaves READY.
  bool left_ready = eager_channel->WaitForStateChange(
      GRPC_CHANNEL_READY, std::chrono::system_clock::now() + std::chrono::seconds(10));
  EXPECT_TRUE(left_ready) << "the eager client's connection was not closed";
  EXPECT_TRUE(WaitFor([] { return g_too_many_pings.load(); }, std::chrono::milliseconds(5000)))
      << "no GOAWAY too_many_pings seen";

  // The well-behaved client kept its connection and is served.
  EXPECT_EQ(normal_channel->GetState(false), GRPC_CHANNEL_READY);
  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*normal, "bob", "2", &res).ok());
  EXPECT_EQ(res.seq(), 2u);
}

// gRPC's receive limit holds (the larger of 4 MiB and --max_message_bytes plus an envelope): a
// request past it is RESOURCE_EXHAUSTED from gRPC before pushd parses it, and the process and the
// channel serve on. (gRPC's minimal filter stack, `grpc.minimal_stack`, drops this limit, and the
// decompression the next test needs: these two tests keep pushd off it.)
TEST(GrpcHardeningTest, ARequestPastTheReceiveLimitIsResourceExhaustedAndServingGoesOn) {
  PushdProcess pushd({"--max_message_bytes=1024"});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  grpc::Status huge = DoPush(*stub, "bob", JsonString(5 << 20, 'h'));
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << huge.error_message();
  // Under the receive limit but over --max_message_bytes: pushd's own INVALID_ARGUMENT.
  grpc::Status over = DoPush(*stub, "bob", JsonString(3 << 20, 'o'));
  EXPECT_EQ(over.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << over.error_message();
  v1::PushResponse res;
  grpc::Status ok = DoPush(*stub, "bob", "1", &res);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(res.seq(), 1u);
}

// A backend whose channel compresses its requests (grpc-encoding: gzip) is understood, and what it
// pushed reaches the browser verbatim.
TEST(GrpcHardeningTest, GzipCompressedRequestsAreUnderstood) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto ws = ConnectUser(pushd, "gina");
  ASSERT_TRUE(ws);
  auto stub = pushd.Stub();
  std::string data = JsonString(4000, 'g');  // compresses to a few dozen bytes
  for (grpc_compression_algorithm algorithm : {GRPC_COMPRESS_GZIP, GRPC_COMPRESS_DEFLATE}) {
    SCOPED_TRACE(algorithm);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.set_compression_algorithm(algorithm);
    v1::PushRequest req;
    req.set_user_id("gina");
    req.set_data(data);
    v1::PushResponse res;
    grpc::Status s = stub->Push(&ctx, req, &res);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(res.delivered(), 1u);
    boost::json::value frame = ws->ReadJson();
    EXPECT_EQ(frame.at("type"), "message");
    EXPECT_EQ(frame.at("data"), boost::json::parse(data));
  }
}

}  // namespace
}  // namespace push::testing
