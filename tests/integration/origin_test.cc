// --allowed_origins: a browser page from another site cannot open a socket in the user's name
// (cross-site WebSocket hijacking); clients without an Origin header (servers, CLIs) still can.

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"

namespace push::testing {
namespace {

TEST(OriginTest, OnlyListedOriginsMayUpgrade) {
  PushdProcess pushd({"--allowed_origins=https://app.example.com, https://admin.example.com"});
  int status = 0;
  auto good = WsClient::Connect(pushd.ws_port(), "/ws?user_id=olive",
                                {{"Origin", "https://admin.example.com"}}, &status);
  EXPECT_TRUE(good);
  EXPECT_EQ(status, 101);
  auto evil = WsClient::Connect(pushd.ws_port(), "/ws?user_id=olive",
                                {{"Origin", "https://evil.example.net"}}, &status);
  EXPECT_FALSE(evil);
  EXPECT_EQ(status, 403);
  // Exact match only: no prefix or scheme tricks.
  auto prefix = WsClient::Connect(pushd.ws_port(), "/getPushNews?userId=olive",
                                  {{"Origin", "https://app.example.com.evil.net"}}, &status);
  EXPECT_FALSE(prefix);
  EXPECT_EQ(status, 403);
  auto scheme = WsClient::Connect(pushd.ws_port(), "/ws?user_id=olive",
                                  {{"Origin", "http://app.example.com"}}, &status);
  EXPECT_FALSE(scheme);
  EXPECT_EQ(status, 403);
  auto cli = WsClient::Connect(pushd.ws_port(), "/ws?user_id=olive", {}, &status);
  EXPECT_TRUE(cli);
  EXPECT_EQ(status, 101);
}

TEST(OriginTest, AnyOriginWhenTheListIsEmpty) {
  PushdProcess pushd;
  int status = 0;
  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=olive",
                              {{"Origin", "https://anywhere.example.org"}}, &status);
  EXPECT_TRUE(ws);
  EXPECT_EQ(status, 101);
}

}  // namespace
}  // namespace push::testing
