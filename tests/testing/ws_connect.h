#pragma once

// Opening a /ws connection the way most tests do: connect, then read the welcome frame that
// pushd sends first, so the next read is the first message.

#include <boost/json/value.hpp>
#include <map>
#include <memory>
#include <string>

#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"

namespace push::testing {

// Opens ws://127.0.0.1:port{target} and reads its first frame, which must be the welcome (the
// test fails otherwise, showing the frame). Returns nullptr, without failing the test, when the
// upgrade is refused or the connection fails: a test that needs the connection asserts on the
// result. `welcome`, when given, receives the frame; `headers` and `http_status` are as for
// WsClient::Connect.
std::unique_ptr<WsClient> ConnectAndReadWelcome(
    int port, const std::string& target, boost::json::value* welcome = nullptr,
    const std::map<std::string, std::string>& headers = {}, int* http_status = nullptr);

// The same for /ws?user_id=<user><extra>, where `extra` adds query parameters ("&since=0").
std::unique_ptr<WsClient> ConnectUser(int port, const std::string& user,
                                      const std::string& extra = "",
                                      boost::json::value* welcome = nullptr);
std::unique_ptr<WsClient> ConnectUser(const PushdProcess& pushd, const std::string& user,
                                      const std::string& extra = "",
                                      boost::json::value* welcome = nullptr);

// The same on a RawClient, for tests that write frames byte by byte: connects, upgrades (the answer
// must be 101) and reads the welcome frame. Returns nullptr, failing the test, otherwise.
std::unique_ptr<RawClient> ConnectRawAndReadWelcome(
    int port, const std::string& target, const std::map<std::string, std::string>& headers = {});

}  // namespace push::testing
