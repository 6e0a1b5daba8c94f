#include "tests/testing/ws_connect.h"

#include <boost/json/serialize.hpp>

#include "gtest/gtest.h"

namespace push::testing {

std::unique_ptr<WsClient> ConnectAndReadWelcome(int port, const std::string& target,
                                                boost::json::value* welcome,
                                                const std::map<std::string, std::string>& headers,
                                                int* http_status) {
  auto ws = WsClient::Connect(port, target, headers, http_status);
  if (!ws) return nullptr;
  boost::json::value frame = ws->ReadJson();
  EXPECT_EQ(frame.at("type"), "welcome") << boost::json::serialize(frame);
  if (welcome) *welcome = std::move(frame);
  return ws;
}

std::unique_ptr<WsClient> ConnectUser(int port, const std::string& user, const std::string& extra,
                                      boost::json::value* welcome) {
  return ConnectAndReadWelcome(port, "/ws?user_id=" + user + extra, welcome);
}

std::unique_ptr<WsClient> ConnectUser(const PushdProcess& pushd, const std::string& user,
                                      const std::string& extra, boost::json::value* welcome) {
  return ConnectUser(pushd.ws_port(), user, extra, welcome);
}

std::unique_ptr<RawClient> ConnectRawAndReadWelcome(
    int port, const std::string& target, const std::map<std::string, std::string>& headers) {
  auto raw = RawClient::Connect(port);
  EXPECT_TRUE(raw) << "cannot connect to port " << port;
  if (!raw) return nullptr;
  int status = raw->Upgrade(target, headers);
  EXPECT_EQ(status, 101) << target;
  if (status != 101) return nullptr;
  std::optional<RawClient::Frame> welcome = raw->ReadFrame();
  EXPECT_TRUE(welcome) << "no welcome frame on " << target;
  if (!welcome) return nullptr;
  EXPECT_EQ(welcome->opcode, 0x1);
  EXPECT_NE(welcome->payload.find(R"("type":"welcome")"), std::string::npos) << welcome->payload;
  return raw;
}

}  // namespace push::testing
