// A drain with many connections (issue 7): going-away closes are spread out, and nothing a Push
// was acknowledged for is lost on the way out (in-memory store: it is written before the 1001;
// with Redis: the clients resume on another node and get the rest from the shared stream).

#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/test_util.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::steady_clock;

TEST(DrainTest, TwoHundredConnectionsCloseSpreadOutAndLoseNothing) {
  constexpr int kUsers = 200;
  PushdProcess pushd({"--drain_timeout=10s", "--log_level=warn"});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kUsers; ++i) {
    clients.push_back(WsClient::Connect(pushd.ws_port(), "/ws?user_id=d" + std::to_string(i)));
    ASSERT_TRUE(clients.back()) << i;
    ASSERT_EQ(clients.back()->ReadJson().at("type"), "welcome");
  }
  // Acknowledged pushes per user: one each before the signal, more while the drain starts.
  std::vector<std::vector<uint64_t>> acked(kUsers);
  for (int i = 0; i < kUsers; ++i) {
    v1::PushResponse res;
    ASSERT_TRUE(DoPush(*stub, absl::StrCat("d", i), "0", &res).ok());
    acked[i].push_back(res.seq());
  }
  // The readers run from before the signal, each waiting in its read when its 1001 comes: the
  // closes' spread is measured from their arrival, and readers started only after the signal
  // (200 threads, each with messages to read first) would see the early closes late, all at
  // about the same time, and shrink the spread they measure.
  std::vector<std::vector<uint64_t>> received(kUsers);
  std::vector<int64_t> close_ms(kUsers, -1);
  std::vector<uint16_t> codes(kUsers, 0);
  std::vector<std::string> ended(kUsers);  // how a connection ended without a close frame
  auto t0 = steady_clock::now();
  std::vector<std::thread> readers;
  for (int i = 0; i < kUsers; ++i) {
    readers.emplace_back([&, i] {
      for (int n = 0; n < 100000; ++n) {
        WsEvent e = clients[i]->Read(std::chrono::milliseconds(15000));
        if (e.kind == WsEvent::kClosed) {
          codes[i] = e.close_code;
          close_ms[i] =
              std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0)
                  .count();
          return;
        }
        if (e.kind != WsEvent::kText) {
          ended[i] = "event kind " + std::to_string(e.kind) + ": " + e.data;
          return;
        }
        json::value v = json::parse(e.data);
        if (v.at("type") == "message") received[i].push_back(v.at("seq").to_number<uint64_t>());
      }
    });
  }
  std::atomic<bool> refused{false};
  std::atomic<size_t> last_user_acked{1};  // acked[kUsers - 1].size(), readable from here
  std::thread pusher([&] {
    for (int n = 0; n < 100000 && !refused; ++n) {
      int i = n % kUsers;
      v1::PushResponse res;
      grpc::Status s = DoPush(*stub, absl::StrCat("d", i), std::to_string(n), &res);
      if (s.ok()) {
        acked[i].push_back(res.seq());
        if (i == kUsers - 1) last_user_acked.fetch_add(1);
      } else {
        EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                    s.error_code() == grpc::StatusCode::CANCELLED)
            << s.error_message();
        refused = true;
      }
    }
  });
  // Let some pushes run, then signal while they continue.
  EXPECT_TRUE(WaitFor([&] { return last_user_acked.load() >= 3; }));
  pushd.Signal(SIGTERM);
  pusher.join();

  for (auto& t : readers) t.join();
  EXPECT_EQ(pushd.Wait(15000), 0);

  int64_t first = INT64_MAX, last = 0;
  for (int i = 0; i < kUsers; ++i) {
    ASSERT_EQ(codes[i], 1001) << "user d" << i << " " << ended[i] << "; received "
                              << received[i].size() << " of " << acked[i].size() << " acked";
    // Everything acknowledged was written before the close (seqs 1..n, in order).
    ASSERT_GE(received[i].size(), acked[i].size()) << "user d" << i << " lost messages";
    for (size_t k = 0; k < received[i].size(); ++k) ASSERT_EQ(received[i][k], k + 1);
    first = std::min(first, close_ms[i]);
    last = std::max(last, close_ms[i]);
  }
  // 200 closes at 500/s take ~400 ms. With every reader already waiting in its read, what
  // narrows the measured spread is only a reader's wake-up delay on its close, not its start.
  EXPECT_GE(last - first, 200) << "the 1001 closes were not spread out";
  int early = 0;
  for (int64_t ms : close_ms) early += ms - first < 50 ? 1 : 0;
  EXPECT_LT(early, kUsers / 2) << "half the connections were closed in the same 50 ms";
}

TEST(DrainTest, WithRedisClientsResumeOnAnotherNodeAndLoseNothing) {
  ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed (scripts/setup.sh)";
  constexpr int kUsers = 200;
  RedisServer redis;
  ASSERT_TRUE(redis.running());
  PushdProcess a(
      {"--redis=" + redis.url(), "--node_id=node-a", "--drain_timeout=10s", "--log_level=warn"});
  PushdProcess b({"--redis=" + redis.url(), "--node_id=node-b", "--log_level=warn"});
  ASSERT_TRUE(a.started() && b.started());
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kUsers; ++i) {
    clients.push_back(WsClient::Connect(a.ws_port(), "/ws?user_id=r" + std::to_string(i)));
    ASSERT_TRUE(clients.back()) << i;
    ASSERT_EQ(clients.back()->ReadJson().at("type"), "welcome");
  }
  auto stub_b = b.Stub();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub_b).total() == kUsers; }));
  // Pushes go through node B, before, during and after node A's drain.
  std::vector<uint64_t> last_acked(kUsers, 0);
  std::atomic<bool> stop{false};
  std::atomic<int> pushes{0};
  std::thread pusher([&] {
    for (int n = 0; n < 1000000 && !stop; ++n) {
      int i = n % kUsers;
      v1::PushResponse res;
      grpc::Status s = DoPush(*stub_b, absl::StrCat("r", i), std::to_string(n), &res);
      ASSERT_TRUE(s.ok()) << s.error_message();
      last_acked[i] = res.seq();
      ++pushes;
    }
  });
  ASSERT_TRUE(WaitFor([&] { return pushes.load() >= 2 * kUsers; }));
  a.Signal(SIGTERM);

  // Each client reads until its 1001, remembering the last seq it got.
  std::vector<uint64_t> last_seen(kUsers, 0);
  std::vector<uint16_t> codes(kUsers, 0);
  std::vector<std::thread> readers;
  for (int i = 0; i < kUsers; ++i) {
    readers.emplace_back([&, i] {
      for (int n = 0; n < 100000; ++n) {
        WsEvent e = clients[i]->Read(std::chrono::milliseconds(15000));
        if (e.kind == WsEvent::kClosed) codes[i] = e.close_code;
        if (e.kind != WsEvent::kText) return;
        json::value v = json::parse(e.data);
        EXPECT_EQ(v.at("type"), "message") << e.data;
        uint64_t seq = v.at("seq").to_number<uint64_t>();
        EXPECT_EQ(seq, last_seen[i] + 1) << "user r" << i;
        last_seen[i] = seq;
      }
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(a.Wait(15000), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  pusher.join();

  // Resume on node B from the last seq seen: the rest comes from the stream, nothing missing.
  for (int i = 0; i < kUsers; ++i) {
    ASSERT_EQ(codes[i], 1001) << "user r" << i;
    auto ws = WsClient::Connect(b.ws_port(), "/ws?user_id=r" + std::to_string(i) +
                                                 "&since=" + std::to_string(last_seen[i]));
    ASSERT_TRUE(ws) << i;
    ASSERT_EQ(ws->ReadJson().at("seq").to_number<uint64_t>(), last_acked[i]);
    for (uint64_t seq = last_seen[i] + 1; seq <= last_acked[i]; ++seq) {
      json::value v = ws->ReadJson();
      ASSERT_EQ(v.at("type"), "message") << "user r" << i << ": " << json::serialize(v);
      ASSERT_EQ(v.at("seq").to_number<uint64_t>(), seq) << "user r" << i;
    }
  }
}

}  // namespace
}  // namespace push::testing
