#pragma once

// What the tests with several pushd nodes (sharing one Redis, or a Redis Cluster) check on a
// client and through ListClients.

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"

namespace push::testing {

// The next message frame's seq, its data in `data` (anything else fails the test), or 0.
inline uint64_t NextSeq(WsClient& ws, std::string* data = nullptr,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  WsEvent e = ws.Read(timeout);
  if (e.kind != WsEvent::kText) {
    ADD_FAILURE() << "wanted a message, got kind " << e.kind << " " << e.data << " code "
                  << e.close_code;
    return 0;
  }
  boost::json::value frame = boost::json::parse(e.data);
  EXPECT_EQ(frame.at("type"), "message") << e.data;
  if (frame.at("type") != "message") return 0;
  if (data) *data = boost::json::serialize(frame.at("data"));
  return frame.at("seq").to_number<uint64_t>();
}

// Nothing more arrives for a while (no duplicate delivery). The client gives the connection up
// afterwards (a read that timed out), so this is a test's last read of it.
inline void ExpectQuiet(WsClient& ws,
                        std::chrono::milliseconds for_time = std::chrono::milliseconds(300)) {
  WsEvent e = ws.Read(for_time);
  EXPECT_EQ(e.kind, WsEvent::kTimeout) << "unexpected frame: " << e.data;
}

// Registration reaches Redis asynchronously after the welcome: waits until ListClients (on
// `node`) shows `want` connections of `user`.
inline bool WaitListed(const PushdProcess& node, const std::string& user, uint64_t want,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  auto stub = node.Stub();
  return WaitFor([&] { return DoList(*stub, user).total() == want; }, timeout);
}

}  // namespace push::testing
