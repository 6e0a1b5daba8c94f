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

}  // namespace push::testing
