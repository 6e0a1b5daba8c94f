// --api_key_file: gRPC calls and DELETE /deleteClient need `authorization: Bearer <key>`; the key
// can be rotated with SIGHUP; pushctl presents it with --api_key_file.

#include <signal.h>
#include <unistd.h>

#include <boost/json.hpp>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/temp_files.h"
#include "tests/testing/test_util.h"

namespace push::testing {
namespace {

grpc::Status PushWithKey(v1::PushService::Stub& stub, const std::string& key) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
  v1::PushRequest req;
  req.set_user_id("kai");
  req.set_data("1");
  v1::PushResponse res;
  return stub.Push(&ctx, req, &res);
}

constexpr char kKey[] = "first-key-0123456789abcdef";
constexpr char kRotated[] = "second-key-0123456789abcdef";

TEST(ApiKeyTest, GrpcCallsNeedTheKey) {
  TempDir dir;
  std::string file = dir.Write("key", std::string(kKey) + "\n");
  PushdProcess pushd({"--api_key_file=" + file});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  grpc::Status none = PushWithKey(*stub, "");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(none.error_message().find("authorization: Bearer"), std::string::npos);
  EXPECT_EQ(PushWithKey(*stub, "wrong-key-0123456789abcdef").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(PushWithKey(*stub, std::string(kKey) + "x").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(PushWithKey(*stub, kKey).ok());
  // The other RPCs too.
  grpc::Status list;
  DoList(*stub, "", 0, "", &list);
  EXPECT_EQ(list.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(DoDelete(*stub, "kai").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The demo page's push route is development-only: off with an API key.
  EXPECT_EQ(HttpRequest(pushd.ws_port(), "POST", "/demo/push",
                        {{"Content-Type", "application/json"}}, R"({"user_id":"kai","data":1})")
                .status,
            404);
}

TEST(ApiKeyTest, HttpDeleteNeedsTheKey) {
  TempDir dir;
  std::string file = dir.Write("key", kKey);
  PushdProcess pushd({"--api_key_file=" + file});
  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=kai");
  ASSERT_TRUE(ws);
  // The welcome comes after the connection is registered, so the delete below can find it.
  ASSERT_EQ(ws->ReadJson().at("type"), "welcome");
  HttpResponse res = HttpRequest(pushd.ws_port(), "DELETE", "/deleteClient/kai");
  EXPECT_EQ(res.status, 401);
  res = HttpRequest(pushd.ws_port(), "DELETE", "/deleteClient/kai",
                    {{"Authorization", "Bearer nope-nope-nope-nope"}});
  EXPECT_EQ(res.status, 401);
  res = HttpRequest(pushd.ws_port(), "DELETE", "/deleteClient/kai",
                    {{"Authorization", std::string("Bearer ") + kKey}});
  EXPECT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(ws->Read().close_code, 1000);
}

TEST(ApiKeyTest, SighupRotatesTheKeyWithoutARestart) {
  TempDir dir;
  std::string file = dir.Write("key", kKey);
  PushdProcess pushd({"--api_key_file=" + file});
  auto stub = pushd.Stub();
  ASSERT_TRUE(PushWithKey(*stub, kKey).ok());
  dir.Write("key", kRotated);
  pushd.Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return PushWithKey(*stub, kRotated).ok(); }));
  EXPECT_EQ(PushWithKey(*stub, kKey).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A bad file on reload keeps the current key.
  dir.Write("key", "short");
  pushd.Signal(SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(PushWithKey(*stub, kRotated).ok());
}

TEST(ApiKeyTest, PushctlPresentsTheKey) {
  TempDir dir;
  std::string file = dir.Write("key", kKey);
  PushdProcess pushd({"--api_key_file=" + file});
  std::string addr = "127.0.0.1:" + std::to_string(pushd.grpc_port());
  RunResult ok = RunCommand(PushctlBinary(), {"push", "--addr", addr, "--api_key_file", file,
                                              "--user", "kai", "--data", "1"});
  EXPECT_EQ(ok.exit_status, 0) << ok.err;
  EXPECT_NE(ok.out.find("seq=1"), std::string::npos);
  RunResult denied =
      RunCommand(PushctlBinary(), {"push", "--addr", addr, "--user", "kai", "--data", "1"});
  EXPECT_EQ(denied.exit_status, 1);
  EXPECT_NE(denied.err.find("UNAUTHENTICATED"), std::string::npos) << denied.err;
}

TEST(ApiKeyTest, UnusableKeyFileIsABadFlagValue) {
  TempDir dir;
  RunResult missing = RunCommand(
      PushdBinary(),
      {"--grpc_listen=127.0.0.1:0", "--ws_listen=127.0.0.1:0", "--api_key_file=/nonexistent/key"});
  EXPECT_EQ(missing.exit_status, 2);
  EXPECT_NE(missing.err.find("--api_key_file"), std::string::npos) << missing.err;
  RunResult weak =
      RunCommand(PushdBinary(), {"--grpc_listen=127.0.0.1:0", "--ws_listen=127.0.0.1:0",
                                 "--api_key_file=" + dir.Write("k", "short")});
  EXPECT_EQ(weak.exit_status, 2);
  EXPECT_NE(weak.err.find("at least 16"), std::string::npos) << weak.err;
}

}  // namespace
}  // namespace push::testing
