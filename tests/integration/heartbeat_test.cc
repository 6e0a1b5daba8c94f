// Server heartbeat against a real pushd with short --ping_interval/--pong_timeout: clients that
// answer pings stay, clients that do not are dropped and leave ListClients.

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds kPingInterval{200};
constexpr milliseconds kPongTimeout{300};

std::vector<std::string> HeartbeatFlags() {
  return {"--ping_interval=200ms", "--pong_timeout=300ms"};
}

TEST(HeartbeatTest, SilentClientIsPingedThenDroppedAndLeavesListClients) {
  PushdProcess pushd(HeartbeatFlags());
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto raw = RawClient::Connect(pushd.ws_port());
  ASSERT_TRUE(raw);
  // Times are counted from before the upgrade request: the server's clock for this connection
  // starts after it, and this thread may be scheduled late for any read below, so only an
  // instant before the request bounds what the server did from below.
  auto asked = steady_clock::now();
  ASSERT_EQ(raw->Upgrade("/ws?user_id=silent"), 101);
  std::optional<RawClient::Frame> welcome = raw->ReadFrame();
  ASSERT_TRUE(welcome);
  EXPECT_EQ(welcome->opcode, 0x1);
  EXPECT_EQ(DoList(*stub, "silent").total(), 1u);

  // Read (never answering) until the server gives up on us.
  int pings = 0;
  int64_t first_ping_ms = -1;
  bool got_close_frame = false;
  for (int i = 0; i < 50; ++i) {
    std::optional<RawClient::Frame> f = raw->ReadFrame(milliseconds(5000));
    if (!f) break;
    if (f->opcode == 0x9) {
      if (pings++ == 0) first_ping_ms = MillisSince(asked);
    } else if (f->opcode == 0x8) {
      got_close_frame = true;
      break;
    } else {
      ADD_FAILURE() << "unexpected frame opcode " << int(f->opcode) << ": " << f->payload;
    }
  }
  int64_t dropped_ms = MillisSince(asked);
  ASSERT_GE(pings, 1) << "no ping before the drop";
  // The first ping comes after half an interval to one (its phase), not at once.
  EXPECT_GE(first_ping_ms, kPingInterval.count() / 2);
  EXPECT_LT(first_ping_ms, 3000);
  // Dropped: the socket reached EOF (or a close frame came), well before our 5 s read timeout.
  EXPECT_TRUE(raw->eof() || got_close_frame) << "connection still open after " << dropped_ms;
  // Not before the pong timeout had a chance to pass after that first ping, not long after it.
  // (Measured from the ping's arrival this would fail whenever this thread read the ping late.)
  EXPECT_GE(dropped_ms, kPingInterval.count() / 2 + kPongTimeout.count());
  EXPECT_LT(dropped_ms, 4000);
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "silent").total() == 0; }));
  HttpResponse metrics = HttpRequest(pushd.ws_port(), "GET", "/metrics");
  EXPECT_EQ(MetricValue(metrics.body, R"(pushd_disconnects_total{reason="pong_timeout"})"), 1u)
      << metrics.body;
}

TEST(HeartbeatTest, ReadingBeastClientStaysWhileSilentClientIsDropped) {
  PushdProcess pushd(HeartbeatFlags());
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=steady");
  ASSERT_TRUE(ws);
  EXPECT_EQ(ws->ReadJson().at("type"), "welcome");
  auto raw = RawClient::Connect(pushd.ws_port());
  ASSERT_TRUE(raw);
  ASSERT_EQ(raw->Upgrade("/ws?user_id=silent"), 101);
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub).total() == 2; }));

  // Keep the Beast client reading (it answers pings only inside a read) for 8 intervals: a
  // second thread pushes every interval while this one reads.
  constexpr int kMessages = 8;
  auto start = steady_clock::now();
  std::atomic<int> push_failures{0};
  std::thread pusher([&] {
    auto pusher_stub = pushd.Stub();
    for (int i = 1; i <= kMessages; ++i) {
      std::this_thread::sleep_for(kPingInterval);  // paces the pushes; nothing to poll
      if (!DoPush(*pusher_stub, "steady", std::to_string(i)).ok()) ++push_failures;
    }
  });
  for (int i = 1; i <= kMessages; ++i) {
    WsEvent event = ws->Read(milliseconds(5000));
    ASSERT_EQ(event.kind, WsEvent::kText) << "message " << i << ": kind=" << event.kind
                                          << " close=" << event.close_code << " " << event.data;
    json::value frame = json::parse(event.data);
    EXPECT_EQ(frame.at("seq"), i);
    EXPECT_EQ(frame.at("data"), i);
  }
  pusher.join();
  EXPECT_EQ(push_failures.load(), 0);
  EXPECT_GE(MillisSince(start), 3 * kPingInterval.count());

  // messages_sent counts when the server's write completes, which may run after this client
  // read the frame (the edge thread scheduled late): wait for the count, then check it.
  v1::ListClientsResponse steady;
  WaitFor([&] {
    steady = DoList(*stub, "steady");
    return steady.clients_size() == 1 &&
           steady.clients(0).messages_sent() >= static_cast<uint64_t>(kMessages);
  });
  ASSERT_EQ(steady.total(), 1u);
  ASSERT_EQ(steady.clients_size(), 1);
  EXPECT_EQ(steady.clients(0).messages_sent(), static_cast<uint64_t>(kMessages));
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "silent").total() == 0; }));
  // The silent one is really gone at the socket level too.
  for (int i = 0; i < 50 && !raw->eof(); ++i) raw->ReadFrame(milliseconds(1000));
  EXPECT_TRUE(raw->eof());
}

TEST(HeartbeatTest, RawClientAnsweringPingsStaysConnected) {
  PushdProcess pushd(HeartbeatFlags());
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=polite");
  ASSERT_TRUE(raw);

  // Answer every ping with a pong carrying its payload, for more than 5 intervals.
  int pings = 0;
  auto start = steady_clock::now();
  while (MillisSince(start) < 6 * kPingInterval.count()) {
    std::optional<RawClient::Frame> f = raw->ReadFrame(milliseconds(1000));
    ASSERT_TRUE(f) << "connection lost after " << MillisSince(start) << " ms, eof=" << raw->eof();
    ASSERT_EQ(f->opcode, 0x9) << f->payload;
    ++pings;
    ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0xA, f->payload)));
  }
  EXPECT_GE(pings, 4);
  EXPECT_EQ(DoList(*stub, "polite").total(), 1u);
  // And it still gets messages.
  ASSERT_TRUE(DoPush(*stub, "polite", R"("alive")").ok());
  for (int i = 0; i < 10; ++i) {
    std::optional<RawClient::Frame> f = raw->ReadFrame(milliseconds(2000));
    ASSERT_TRUE(f);
    if (f->opcode == 0x9) {
      raw->SendBytes(RawClient::EncodeFrame(0xA, f->payload));
      continue;
    }
    ASSERT_EQ(f->opcode, 0x1);
    EXPECT_EQ(json::parse(f->payload).at("data"), "alive");
    break;
  }
}

TEST(HeartbeatTest, ClientPingGetsPongWithSamePayload) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto raw = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=pinger");
  ASSERT_TRUE(raw);
  ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0x9, "are you there")));
  std::optional<RawClient::Frame> pong = raw->ReadFrame();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, 0xA);
  EXPECT_EQ(pong->payload, "are you there");
  // An unsolicited pong is legal (RFC 6455 5.5.3) and changes nothing.
  ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0xA, "unsolicited")));
  auto stub = pushd.Stub();
  ASSERT_TRUE(DoPush(*stub, "pinger", "7").ok());
  std::optional<RawClient::Frame> msg = raw->ReadFrame();
  ASSERT_TRUE(msg);
  ASSERT_EQ(msg->opcode, 0x1);
  EXPECT_EQ(json::parse(msg->payload).at("data"), 7);
}

// Connections that arrive together do not ping together: each connection's first ping is due
// between half an interval and one, at a phase of its own (issue 13: a reconnect storm otherwise
// makes every later heartbeat a burst).
TEST(HeartbeatTest, ConnectionsThatArriveTogetherPingAtSpreadTimes) {
  constexpr int kClients = 32;
  constexpr milliseconds kInterval{2000};
  PushdProcess pushd({"--ping_interval=2s", "--pong_timeout=10s"});
  ASSERT_TRUE(pushd.started());
  std::vector<std::unique_ptr<RawClient>> clients;
  // Each client's instant before its upgrade request: its connection's clock on the server
  // starts after it, so its first ping cannot come sooner than half an interval after it, however
  // long the 32 upgrades take together or however late a reader reads.
  std::vector<steady_clock::time_point> asked(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(RawClient::Connect(pushd.ws_port()));
    ASSERT_TRUE(clients.back());
    asked[i] = steady_clock::now();
    ASSERT_EQ(clients.back()->Upgrade("/ws?user_id=storm" + std::to_string(i)), 101);
  }
  auto connected = steady_clock::now();
  // One reader per client, so that each ping's arrival time is its own.
  std::vector<int64_t> first_ping_ms(kClients, -1);   // since `connected`
  std::vector<int64_t> since_asked_ms(kClients, -1);  // since the client's own request
  std::vector<std::thread> readers;
  for (int i = 0; i < kClients; ++i) {
    readers.emplace_back([&, i] {
      for (int n = 0; n < 3; ++n) {  // the welcome, then the ping
        std::optional<RawClient::Frame> f = clients[i]->ReadFrame(milliseconds(5000));
        if (!f) return;
        if (f->opcode == 0x9) {
          first_ping_ms[i] = MillisSince(connected);
          since_asked_ms[i] = MillisSince(asked[i]);
          return;
        }
      }
    });
  }
  for (auto& t : readers) t.join();
  int64_t earliest = INT64_MAX, latest = 0;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_GE(first_ping_ms[i], 0) << "client " << i << " got no ping";
    // Never before half an interval after the client's own upgrade.
    EXPECT_GE(since_asked_ms[i], kInterval.count() / 2) << "client " << i;
    earliest = std::min(earliest, first_ping_ms[i]);
    latest = std::max(latest, first_ping_ms[i]);
  }
  // Never much after one interval (counted from after the last upgrade: an upper bound).
  EXPECT_LT(latest, kInterval.count() + 1500);
  // Spread over about half an interval; without the phases they all come within a tick or two.
  EXPECT_GE(latest - earliest, kInterval.count() * 3 / 10) << earliest << ".." << latest;
}

}  // namespace
}  // namespace push::testing
