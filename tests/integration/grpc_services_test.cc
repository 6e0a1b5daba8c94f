// The standard services next to PushService: grpc.health.v1.Health and server reflection,
// called as any generic gRPC client would (no generated stubs for them).

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include <condition_variable>
#include <csignal>
#include <mutex>

#include "gtest/gtest.h"
#include "tests/testing/pushd_process.h"

namespace push::testing {
namespace {

// One unary call with raw protobuf bytes; returns the status and fills `response`.
grpc::Status RawUnary(int port, const std::string& method, const std::string& request,
                      std::string* response) {
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1);
  grpc::ByteBuffer res;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &res, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    result = s;
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  std::vector<grpc::Slice> slices;
  if (result.ok() && res.Dump(&slices).ok()) {
    for (const auto& s : slices)
      response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return result;
}

TEST(GrpcServicesTest, HealthCheckSaysServing) {
  PushdProcess pushd;
  std::string response;
  // HealthCheckRequest{service: ""} is the empty message.
  grpc::Status status = RawUnary(pushd.grpc_port(), "/grpc.health.v1.Health/Check", "", &response);
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
      RawUnary(pushd.grpc_port(), "/grpc.health.v1.Health/Check",
               std::string("\x0a", 1) + static_cast<char>(name.size()) + name, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response, std::string("\x08\x01", 2));
  response.clear();
  status = RawUnary(pushd.grpc_port(), "/grpc.health.v1.Health/Check",
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
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (res.Dump(&slices).ok()) {
      for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
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
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(res.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
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
