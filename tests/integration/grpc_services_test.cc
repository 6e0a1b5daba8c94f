// The standard services next to PushService: grpc.health.v1.Health and server reflection,
// called as any generic gRPC client would (no generated stubs for them).

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include <csignal>

#include "gtest/gtest.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/raw_grpc.h"

namespace push::testing {
namespace {

TEST(GrpcServicesTest, HealthCheckSaysServing) {
  PushdProcess pushd;
  std::string response;
  // HealthCheckRequest{service: ""} is the empty message.
  grpc::Status status =
      RawUnaryCall(pushd.grpc_port(), "/grpc.health.v1.Health/Check", "", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // HealthCheckResponse{status: SERVING (1)} = field 1, varint 1.
  EXPECT_EQ(response, std::string("\x08\x01", 2));
}

TEST(GrpcServicesTest, HealthCheckKnowsPushServiceAndRefusesUnknownNames) {
  PushdProcess pushd;
  std::string response;
  // HealthCheckRequest{service: "push.v1.PushService"}.
  std::string name = "push.v1.PushService";
  grpc::Status status =
      RawUnaryCall(pushd.grpc_port(), "/grpc.health.v1.Health/Check",
                   std::string("\x0a", 1) + static_cast<char>(name.size()) + name, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response, std::string("\x08\x01", 2));
  response.clear();
  status = RawUnaryCall(pushd.grpc_port(), "/grpc.health.v1.Health/Check",
                        std::string("\x0a\x04nope", 6), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
}

// Watch sends SERVING at once, then NOT_SERVING when the drain begins (SIGTERM), so a load
// balancer watching the server stops sending before it goes.
TEST(GrpcServicesTest, HealthWatchReportsTheDrain) {
  PushdProcess pushd({"--drain_timeout=3s"});
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(pushd.grpc_port()),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&ctx, "/grpc.health.v1.Health/Watch", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::Slice empty("");
  grpc::ByteBuffer req(&empty, 1);
  call->WriteLast(req, grpc::WriteOptions(), reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  auto read = [&]() -> std::string {
    grpc::ByteBuffer res;
    call->Read(&res, reinterpret_cast<void*>(3));
    if (!cq.Next(&tag, &ok) || !ok) return "end";
    std::string bytes;
    AppendBytes(res, &bytes);
    return bytes;
  };
  EXPECT_EQ(read(), std::string("\x08\x01", 2));  // SERVING
  pushd.Signal(SIGTERM);
  EXPECT_EQ(read(), std::string("\x08\x02", 2));  // NOT_SERVING
  ctx.TryCancel();
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(5)) {
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  EXPECT_EQ(pushd.Wait(20000), 0);
}

TEST(GrpcServicesTest, ReflectionListsPushService) {
  PushdProcess pushd;
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(pushd.grpc_port()),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call =
      stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  // ServerReflectionRequest{list_services: "*"} = field 7 (string) "*".
  std::string request("\x3a\x01*", 3);
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1);
  call->Write(req, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer res;
  call->Read(&res, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  std::string bytes;
  ASSERT_TRUE(AppendBytes(res, &bytes));
  EXPECT_NE(bytes.find("push.v1.PushService"), std::string::npos);
  EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
  call->WritesDone(reinterpret_cast<void*>(4));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(5)) {
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace push::testing
