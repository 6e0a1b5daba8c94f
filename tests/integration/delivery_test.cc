// Delivery guarantees (CONTRACT §3 "Delivery rules"): offline replay, since, cursors, gaps,
// idempotency and slow consumers, against a real pushd with real clients.

#include <atomic>
#include <boost/json.hpp>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;

// What one connection saw: the welcome seq, then message seqs and gap ranges in arrival order.
struct Seen {
  uint64_t welcome_seq = 0;
  std::vector<uint64_t> seqs;
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  std::vector<std::string> data;
};

std::unique_ptr<WsClient> Connect(const PushdProcess& pushd, const std::string& query, Seen* seen) {
  json::value welcome;
  auto ws = ConnectAndReadWelcome(pushd.ws_port(), "/ws?" + query, &welcome);
  if (!ws) return nullptr;
  seen->welcome_seq = welcome.at("seq").to_number<uint64_t>();
  return ws;
}

// Reads frames until `count` messages arrived; gap frames are recorded on the way.
bool ReadMessages(WsClient& ws, size_t count, Seen* seen) {
  size_t got = 0;
  while (got < count) {
    WsEvent event = ws.Read();
    if (event.kind != WsEvent::kText) {
      ADD_FAILURE() << "wanted a frame, got kind " << event.kind << " " << event.data << " "
                    << event.close_code << " " << event.close_reason;
      return false;
    }
    json::value frame = json::parse(event.data);
    if (frame.at("type") == "gap") {
      seen->gaps.emplace_back(frame.at("from").to_number<uint64_t>(),
                              frame.at("to").to_number<uint64_t>());
      continue;
    }
    EXPECT_EQ(frame.at("type"), "message");
    seen->seqs.push_back(frame.at("seq").to_number<uint64_t>());
    seen->data.push_back(json::serialize(frame.at("data")));
    ++got;
  }
  return true;
}

std::vector<uint64_t> Range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (uint64_t s = from; s <= to; ++s) out.push_back(s);
  return out;
}

TEST(DeliveryTest, OfflinePushesAreReplayedInOrderOnConnect) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  for (int i = 1; i <= 5; ++i) {
    v1::PushResponse res;
    ASSERT_TRUE(DoPush(*stub, "olga", std::to_string(i * 10), &res).ok());
    EXPECT_EQ(res.seq(), static_cast<uint64_t>(i));
    EXPECT_EQ(res.delivered(), 0u);
  }
  Seen seen;
  auto ws = Connect(pushd, "user_id=olga", &seen);
  ASSERT_TRUE(ws);
  EXPECT_EQ(seen.welcome_seq, 5u);
  ASSERT_TRUE(ReadMessages(*ws, 5, &seen));
  EXPECT_EQ(seen.seqs, Range(1, 5));
  EXPECT_EQ(seen.data, (std::vector<std::string>{"10", "20", "30", "40", "50"}));
  EXPECT_TRUE(seen.gaps.empty());
  // Then live.
  ASSERT_TRUE(DoPush(*stub, "olga", "60").ok());
  ASSERT_TRUE(ReadMessages(*ws, 1, &seen));
  EXPECT_EQ(seen.seqs.back(), 6u);
}

TEST(DeliveryTest, ReconnectWithoutSinceResumesAfterWhatWasWritten) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  Seen first;
  auto ws = Connect(pushd, "user_id=pete", &first);
  ASSERT_TRUE(ws);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(DoPush(*stub, "pete", "1").ok());
  ASSERT_TRUE(ReadMessages(*ws, 3, &first));
  ws->Close();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "pete").total() == 0; }));
  ASSERT_TRUE(DoPush(*stub, "pete", "4").ok());
  ASSERT_TRUE(DoPush(*stub, "pete", "5").ok());
  Seen second;
  ws = Connect(pushd, "user_id=pete", &second);
  ASSERT_TRUE(ws);
  ASSERT_TRUE(ReadMessages(*ws, 2, &second));
  EXPECT_EQ(second.seqs, Range(4, 5));
}

TEST(DeliveryTest, SinceReplaysEverythingRetainedAfterIt) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(DoPush(*stub, "quinn", "null").ok());
  // The first connection drains everything and moves the cursor to 5 ...
  Seen drained;
  auto ws = Connect(pushd, "user_id=quinn", &drained);
  ASSERT_TRUE(ReadMessages(*ws, 5, &drained));
  ws->Close();
  // ... but a client that says it saw only up to 2 gets 3..5 again.
  Seen resumed;
  ws = Connect(pushd, "user_id=quinn&since=2", &resumed);
  ASSERT_TRUE(ws);
  EXPECT_EQ(resumed.welcome_seq, 5u);
  ASSERT_TRUE(ReadMessages(*ws, 3, &resumed));
  EXPECT_EQ(resumed.seqs, Range(3, 5));
  // since=0 means everything.
  Seen all;
  auto ws2 = Connect(pushd, "user_id=quinn&since=0", &all);
  ASSERT_TRUE(ReadMessages(*ws2, 5, &all));
  EXPECT_EQ(all.seqs, Range(1, 5));
}

TEST(DeliveryTest, SinceBeyondTheEndMeansANewStreamAndReplaysItFromTheStart) {
  // A since from an earlier life of the stream (e.g. its numbering was forgotten): the welcome
  // seq below since tells the client, and the current stream comes from seq 1.
  PushdProcess pushd;
  auto stub = pushd.Stub();
  ASSERT_TRUE(DoPush(*stub, "nina", R"("a")").ok());
  ASSERT_TRUE(DoPush(*stub, "nina", R"("b")").ok());
  Seen seen;
  auto ws = Connect(pushd, "user_id=nina&since=100", &seen);
  ASSERT_TRUE(ws);
  EXPECT_EQ(seen.welcome_seq, 2u);
  ASSERT_TRUE(ReadMessages(*ws, 2, &seen));
  EXPECT_EQ(seen.seqs, Range(1, 2));
  ASSERT_TRUE(DoPush(*stub, "nina", R"("c")").ok());
  ASSERT_TRUE(ReadMessages(*ws, 1, &seen));
  EXPECT_EQ(seen.seqs, Range(1, 3));
  EXPECT_TRUE(seen.gaps.empty());
}

TEST(DeliveryTest, AckConnectionsMoveTheCursorOnlyByAcks) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  Seen seen;
  auto ws = Connect(pushd, "user_id=rita&ack=1", &seen);
  ASSERT_TRUE(ws);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(DoPush(*stub, "rita", "0").ok());
  ASSERT_TRUE(ReadMessages(*ws, 3, &seen));
  ASSERT_TRUE(ws->SendText(R"({"type":"ack","seq":1})"));
  ws->Close();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "rita").total() == 0; }));
  // Written but not acknowledged: 2 and 3 come again.
  Seen again;
  ws = Connect(pushd, "user_id=rita&ack=1", &again);
  ASSERT_TRUE(ReadMessages(*ws, 2, &again));
  EXPECT_EQ(again.seqs, Range(2, 3));
  // An ack beyond what was written counts only up to what was written.
  ASSERT_TRUE(ws->SendText(R"({"type":"ack","seq":99})"));
  ws->Close();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "rita").total() == 0; }));
  ASSERT_TRUE(DoPush(*stub, "rita", "4").ok());
  Seen last;
  ws = Connect(pushd, "user_id=rita", &last);
  ASSERT_TRUE(ReadMessages(*ws, 1, &last));
  EXPECT_EQ(last.seqs, Range(4, 4));
}

TEST(DeliveryTest, GapFrameWhenHistoryWasEvicted) {
  PushdProcess pushd({"--history_size=3"});
  auto stub = pushd.Stub();
  for (int i = 1; i <= 6; ++i) ASSERT_TRUE(DoPush(*stub, "sam", std::to_string(i)).ok());
  Seen seen;
  auto ws = Connect(pushd, "user_id=sam&since=0", &seen);
  ASSERT_TRUE(ws);
  EXPECT_EQ(seen.welcome_seq, 6u);
  ASSERT_TRUE(ReadMessages(*ws, 3, &seen));
  EXPECT_EQ(seen.gaps, (std::vector<std::pair<uint64_t, uint64_t>>{{1, 3}}));
  EXPECT_EQ(seen.seqs, Range(4, 6));
}

TEST(DeliveryTest, ExpiredMessagesAreNotReplayedAndLeaveAGap) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  ASSERT_TRUE(DoPush(*stub, "tara", R"("short")", nullptr, "", 1).ok());
  ASSERT_TRUE(DoPush(*stub, "tara", R"("long")").ok());
  ASSERT_TRUE(DoPush(*stub, "tara", R"("short too")", nullptr, "", 1).ok());
  // Let the one-second ttl pass.
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  Seen seen;
  auto ws = Connect(pushd, "user_id=tara", &seen);
  ASSERT_TRUE(ws);
  ASSERT_TRUE(ReadMessages(*ws, 1, &seen));
  EXPECT_EQ(seen.seqs, Range(2, 2));
  EXPECT_EQ(seen.data, std::vector<std::string>{R"("long")"});
  // The trailing expired message is announced too, before anything live.
  ASSERT_TRUE(DoPush(*stub, "tara", R"("live")").ok());
  ASSERT_TRUE(ReadMessages(*ws, 1, &seen));
  EXPECT_EQ(seen.gaps, (std::vector<std::pair<uint64_t, uint64_t>>{{1, 1}, {3, 3}}));
  EXPECT_EQ(seen.seqs.back(), 4u);
}

TEST(DeliveryTest, RepeatedMessageIdIsStoredAndDeliveredOnce) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  Seen seen;
  auto ws = Connect(pushd, "user_id=uma", &seen);
  ASSERT_TRUE(ws);
  v1::PushResponse first, second, other_user;
  ASSERT_TRUE(DoPush(*stub, "uma", R"({"order":1})", &first, "order-1").ok());
  ASSERT_TRUE(DoPush(*stub, "uma", R"({"order":1})", &second, "order-1").ok());
  EXPECT_EQ(first.message_id(), "order-1");
  EXPECT_EQ(second.seq(), first.seq());
  EXPECT_EQ(second.message_id(), "order-1");
  EXPECT_EQ(first.delivered(), 1u);
  EXPECT_EQ(second.delivered(), 0u);
  // The same key for another user is another message.
  ASSERT_TRUE(DoPush(*stub, "vic", R"({"order":1})", &other_user, "order-1").ok());
  EXPECT_EQ(other_user.seq(), 1u);
  // The next frame after the first is the sentinel: the duplicate never went out.
  ASSERT_TRUE(DoPush(*stub, "uma", R"("sentinel")").ok());
  ASSERT_TRUE(ReadMessages(*ws, 2, &seen));
  EXPECT_EQ(seen.seqs, Range(1, 2));
  EXPECT_EQ(seen.data[1], R"("sentinel")");
}

TEST(DeliveryTest, PurgeDropsStoredMessagesButNumberingGoesOn) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(DoPush(*stub, "wes", "1").ok());
  v1::DeleteClientResponse res;
  ASSERT_TRUE(DoDelete(*stub, "wes", &res, "", true).ok());
  EXPECT_EQ(res.closed(), 0u);
  Seen seen;
  auto ws = Connect(pushd, "user_id=wes", &seen);
  ASSERT_TRUE(ws);
  EXPECT_EQ(seen.welcome_seq, 3u);
  ASSERT_TRUE(DoPush(*stub, "wes", R"("after purge")").ok());
  ASSERT_TRUE(ReadMessages(*ws, 1, &seen));
  EXPECT_EQ(seen.seqs, Range(4, 4));
  EXPECT_TRUE(seen.gaps.empty());
  // A client resuming from before the purge learns that 1..3 are gone.
  Seen old;
  auto ws2 = Connect(pushd, "user_id=wes&since=0", &old);
  ASSERT_TRUE(ReadMessages(*ws2, 1, &old));
  EXPECT_EQ(old.gaps, (std::vector<std::pair<uint64_t, uint64_t>>{{1, 3}}));
  EXPECT_EQ(old.seqs, Range(4, 4));
}

TEST(DeliveryTest, CompatibilityRouteGetsTheSameReplay) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  ASSERT_TRUE(DoPush(*stub, "xena", R"({"n":1})").ok());
  ASSERT_TRUE(DoPush(*stub, "xena", R"({"n":2})").ok());
  auto ws = WsClient::Connect(pushd.ws_port(), "/getPushNews?userId=xena");
  ASSERT_TRUE(ws);
  EXPECT_EQ(ws->Read().data, R"({"n":1})");
  EXPECT_EQ(ws->Read().data, R"({"n":2})");
}

TEST(DeliveryTest, LargeBacklogIsReplayedInPagesWhileLivePushesArrive) {
  // 600 × ~4 KiB is several times the send queue bound: replay must be paced, not dumped,
  // and pushes racing the replay must slot in without duplicates or holes.
  PushdProcess pushd({"--send_queue_bytes=262144"});
  auto stub = pushd.Stub();
  const std::string payload = "\"" + std::string(4000, 'x') + "\"";
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(DoPush(*stub, "yuri", payload).ok());
  Seen seen;
  auto ws = Connect(pushd, "user_id=yuri", &seen);
  ASSERT_TRUE(ws);
  std::thread pusher([&] {
    for (int i = 0; i < 50; ++i) EXPECT_TRUE(DoPush(*stub, "yuri", "1").ok());
  });
  bool ok = ReadMessages(*ws, 650, &seen);
  pusher.join();
  ASSERT_TRUE(ok);
  EXPECT_EQ(seen.seqs, Range(1, 650));
  EXPECT_TRUE(seen.gaps.empty());
}

TEST(DeliveryTest, ReconnectingClientsSeeEverySeqOnceInOrderWhilePushesRace) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  constexpr int kPushers = 2;
  constexpr int kPerPusher = 600;
  constexpr uint64_t kTotal = kPushers * kPerPusher;
  std::vector<std::thread> pushers;
  for (int p = 0; p < kPushers; ++p) {
    pushers.emplace_back([&] {
      auto own = pushd.Stub();
      for (int i = 0; i < kPerPusher; ++i) EXPECT_TRUE(DoPush(*own, "zoe", "{}").ok());
    });
  }
  // Three "tabs" that keep dropping and resuming with since while pushes go on.
  std::vector<std::thread> tabs;
  std::atomic<int> failures{0};
  for (int t = 0; t < 3; ++t) {
    tabs.emplace_back([&, t] {
      std::mt19937 rng(t);
      uint64_t last = 0;
      for (int round = 0; round < 200 && last < kTotal; ++round) {
        Seen seen;
        auto ws = Connect(pushd, "user_id=zoe&since=" + std::to_string(last), &seen);
        if (!ws) {
          ++failures;
          return;
        }
        if (seen.welcome_seq < last) ++failures;
        size_t want = std::min<uint64_t>(1 + rng() % 80, kTotal - last);
        if (!ReadMessages(*ws, want, &seen) || !seen.gaps.empty()) {
          ++failures;
          return;
        }
        for (uint64_t seq : seen.seqs) {
          if (seq != last + 1) {
            ADD_FAILURE() << "tab " << t << " expected " << last + 1 << " got " << seq;
            ++failures;
            return;
          }
          last = seq;
        }
        if (rng() % 2) ws->Close();  // else drop the TCP connection without a close frame
      }
      if (last != kTotal) {
        ADD_FAILURE() << "tab " << t << " ended at " << last;
        ++failures;
      }
    });
  }
  for (auto& p : pushers) p.join();
  for (auto& t : tabs) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(DeliveryTest, SlowConsumerIsClosedWith4008AndOthersKeepReceiving) {
  PushdProcess pushd({"--send_queue_bytes=65536"});
  auto stub = pushd.Stub();
  auto slow = RawClient::Connect(pushd.ws_port());
  ASSERT_TRUE(slow);
  ASSERT_EQ(slow->Upgrade("/ws?user_id=slowpoke"), 101);
  Seen fast_seen;
  auto fast = Connect(pushd, "user_id=speedy", &fast_seen);
  ASSERT_TRUE(fast);
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "slowpoke").total() == 1; }));

  // The slow client reads nothing while pushes pile up; the fast one reads each of its own.
  const std::string payload = "\"" + std::string(16000, 's') + "\"";
  uint64_t pushed = 0;
  bool closed = false;
  for (int i = 0; i < 3000 && !closed; ++i) {
    v1::PushResponse res;
    ASSERT_TRUE(DoPush(*stub, "slowpoke", payload, &res).ok());
    pushed = res.seq();
    if (i % 50 == 0) {
      ASSERT_TRUE(DoPush(*stub, "speedy", std::to_string(i)).ok());
      ASSERT_TRUE(ReadMessages(*fast, 1, &fast_seen)) << "the fast client stalled";
    }
    closed = DoList(*stub, "slowpoke").total() == 0;
  }
  ASSERT_TRUE(closed) << "the slow consumer was never cut off";

  // Resume reading: what was in flight, then the 4008 close.
  uint64_t last_seq = 0;
  uint16_t close_code = 0;
  for (int i = 0; i < 5000; ++i) {
    auto frame = slow->ReadFrame();
    if (!frame) break;
    if (frame->opcode == 0x8) {
      close_code = frame->close_code();
      break;
    }
    if (frame->opcode != 0x1) continue;
    json::value v = json::parse(frame->payload);
    if (v.at("type") == "message") {
      uint64_t seq = v.at("seq").to_number<uint64_t>();
      EXPECT_EQ(seq, last_seq + 1);
      last_seq = seq;
    }
  }
  EXPECT_EQ(close_code, 4008);
  EXPECT_LT(last_seq, pushed);

  // What it missed is still there on the next connect.
  Seen rest;
  auto again = Connect(pushd, "user_id=slowpoke&since=" + std::to_string(last_seq), &rest);
  ASSERT_TRUE(again);
  ASSERT_TRUE(ReadMessages(*again, pushed - last_seq, &rest));
  EXPECT_EQ(rest.seqs, Range(last_seq + 1, pushed));
  EXPECT_TRUE(rest.gaps.empty());
}

}  // namespace
}  // namespace push::testing
