// Presence (CONTRACT §6, issue 15): WatchPresence against a real pushd, with real WebSocket
// clients and a real gRPC stream, on both backends: the embedded default and one real
// redis-server (--redis). Several nodes, node crashes and the Redis Cluster:
// presence_nodes_test.cc.

#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/presence_watcher.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

using std::chrono::milliseconds;
using Kind = v1::PresenceEvent;

std::string ConnectionId(const boost::json::value& welcome) {
  return std::string(welcome.at("connection_id").as_string());
}

// Every event the watcher has within `quiet` of the last one.
std::vector<v1::PresenceEvent> Drain(PresenceWatcher& w, milliseconds quiet = milliseconds(500)) {
  std::vector<v1::PresenceEvent> out;
  while (auto e = w.Next(quiet)) out.push_back(*e);
  return out;
}

// The watcher's first `n` events, each waited for up to `timeout` (fewer if one never comes),
// then any more that follow within `quiet` (Drain): exactly `n` when no extra event came. A
// quiet period alone is no way to wait for events still to come (an OFFLINE made by a later
// tick, a second stream served in its own time); it only shows that nothing more came.
std::vector<v1::PresenceEvent> Collect(PresenceWatcher& w, size_t n,
                                       milliseconds quiet = milliseconds(500),
                                       milliseconds timeout = milliseconds(10000)) {
  std::vector<v1::PresenceEvent> out;
  while (out.size() < n) {
    auto e = w.Next(timeout);
    if (!e) return out;
    out.push_back(*e);
  }
  for (auto& e : Drain(w, quiet)) out.push_back(e);
  return out;
}

// Each test runs on the embedded store ("memory") and on a redis-server of its own ("redis").
class PresenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "redis") {
      ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
      redis_ = std::make_unique<RedisServer>();
      ASSERT_TRUE(redis_->running());
    }
  }
  std::unique_ptr<PushdProcess> Start(std::vector<std::string> args = {}) {
    if (redis_) args.push_back("--redis=" + redis_->url());
    auto pushd = std::make_unique<PushdProcess>(args);
    EXPECT_TRUE(pushd->started());
    return pushd;
  }
  std::unique_ptr<RedisServer> redis_;
};

TEST_P(PresenceTest, ConnectGivesConnectedAndOnlineWithConsecutiveCursors) {
  auto node = Start({"--node_id=n1", "--presence_offline_delay=500ms"});
  ASSERT_TRUE(node->started());
  PushdProcess& pushd = *node;
  PresenceWatcher w(pushd.grpc_port());
  boost::json::value welcome;
  auto ws = ConnectUser(pushd, "ann", "&device_id=phone", &welcome);
  ASSERT_TRUE(ws);
  auto c = w.Next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind(), Kind::CONNECTED);
  EXPECT_EQ(c->user_id(), "ann");
  EXPECT_EQ(c->connection_id(), ConnectionId(welcome));
  EXPECT_EQ(c->node_id(), "n1");
  EXPECT_EQ(c->cursor(), w.start_cursor() + 1);
  EXPECT_GT(c->at().seconds(), 0);
  auto o = w.Next();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->kind(), Kind::ONLINE);
  EXPECT_EQ(o->user_id(), "ann");
  EXPECT_EQ(o->cursor(), c->cursor() + 1);
  // A second tab: CONNECTED only, the user is online already.
  auto ws2 = ConnectUser(pushd, "ann");
  ASSERT_TRUE(ws2);
  auto c2 = w.Next();
  ASSERT_TRUE(c2);
  EXPECT_EQ(c2->kind(), Kind::CONNECTED);
  EXPECT_EQ(c2->cursor(), o->cursor() + 1);
  ws2->Close();
  auto d = w.Next();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->kind(), Kind::DISCONNECTED);
  EXPECT_EQ(d->reason(), "client closed");
  // One tab is still open: no OFFLINE, whatever the delay.
  EXPECT_FALSE(w.Next(milliseconds(1200))) << "nothing more while a tab is open";
}

TEST_P(PresenceTest, AReloadInsideTheDelayIsNoOfflineAndTheLastTabClosedIsOfflineAfterIt) {
  auto node = Start({"--presence_offline_delay=1s"});
  ASSERT_TRUE(node->started());
  PushdProcess& pushd = *node;
  PresenceWatcher w(pushd.grpc_port());
  auto ws = ConnectUser(pushd, "bea");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(w.NextOf(Kind::ONLINE));
  // A page reload: the tab closes and opens again at once.
  ws->Close();
  ws = ConnectUser(pushd, "bea");
  ASSERT_TRUE(ws);
  std::vector<v1::PresenceEvent> events = Drain(w, milliseconds(2000));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind(), Kind::DISCONNECTED);
  EXPECT_EQ(events[1].kind(), Kind::CONNECTED);
  // The last tab closes: OFFLINE once the delay has passed, not before.
  ws->Close();
  auto d = w.Next();
  ASSERT_TRUE(d);
  ASSERT_EQ(d->kind(), Kind::DISCONNECTED);
  auto off = w.Next(milliseconds(10000));
  ASSERT_TRUE(off);
  EXPECT_EQ(off->kind(), Kind::OFFLINE);
  EXPECT_EQ(off->user_id(), "bea");
  EXPECT_EQ(off->cursor(), d->cursor() + 1);
  auto ms = [](const v1::PresenceEvent& e) {
    return e.at().seconds() * 1000 + e.at().nanos() / 1000000;
  };
  EXPECT_GE(ms(*off) - ms(*d), 1000) << "OFFLINE came before the delay";
  EXPECT_LT(ms(*off) - ms(*d), 5000);
}

TEST_P(PresenceTest, AFilteredWatcherSeesOnlyItsUsers) {
  auto node = Start();
  ASSERT_TRUE(node->started());
  PushdProcess& pushd = *node;
  PresenceWatcher all(pushd.grpc_port());
  PresenceWatcher only(pushd.grpc_port(), {"cal", "dan"});
  auto a = ConnectUser(pushd, "eve");
  auto b = ConnectUser(pushd, "cal");
  ASSERT_TRUE(a && b);
  auto e = only.Next();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->user_id(), "cal");
  EXPECT_EQ(e->kind(), Kind::CONNECTED);
  // `all` is a stream of its own, served in its own time: that `only` has its event says
  // nothing of where `all` is.
  std::vector<v1::PresenceEvent> seen = Collect(all, 4);
  EXPECT_EQ(seen.size(), 4u);  // eve and cal, each CONNECTED and ONLINE
}

TEST_P(PresenceTest, AResumedWatcherMissesNothingAndSeesNothingTwice) {
  auto node = Start({"--presence_offline_delay=200ms"});
  ASSERT_TRUE(node->started());
  PushdProcess& pushd = *node;
  // The reference: a watcher that stays for the whole test.
  PresenceWatcher reference(pushd.grpc_port());
  uint64_t last = 0;
  {
    PresenceWatcher first(pushd.grpc_port(), {}, 0);
    auto ws = ConnectUser(pushd, "fay");
    ASSERT_TRUE(ws);
    auto e = first.NextOf(Kind::ONLINE);
    ASSERT_TRUE(e);
    last = e->cursor();
  }  // the watcher goes away; events go on
  for (int i = 0; i < 5; ++i) {
    auto ws = ConnectUser(pushd, "gus" + std::to_string(i));
    ASSERT_TRUE(ws);
  }  // each closes: DISCONNECTED, then OFFLINE after the delay
  // Resumed now, before the OFFLINEs (made at the first tick past the delay): it gets the
  // events before it from the log and the later ones live, and the line between the two must
  // neither drop nor repeat one. Both watchers wait for each event (with Redis, a tick a
  // second), then a second's quiet shows no more came.
  PresenceWatcher resumed(pushd.grpc_port(), {}, last);
  // fay and 5 more users, each CONNECTED, ONLINE, DISCONNECTED, OFFLINE.
  std::vector<v1::PresenceEvent> want = Collect(reference, 24, milliseconds(1000));
  ASSERT_EQ(want.size(), 24u);
  std::vector<v1::PresenceEvent> after_last;
  for (auto& e : want) {
    if (e.cursor() > last) after_last.push_back(e);
  }
  std::vector<v1::PresenceEvent> got = Collect(resumed, after_last.size(), milliseconds(1000));
  ASSERT_EQ(got.size(), after_last.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].cursor(), last + 1 + i);
    EXPECT_EQ(got[i].SerializeAsString(), after_last[i].SerializeAsString()) << i;
  }
}

TEST_P(PresenceTest, ResumingAfterAPointNoLongerKeptStartsWithResync) {
  auto node = Start({"--presence_retention=1s", "--presence_offline_delay=100ms"});
  ASSERT_TRUE(node->started());
  PushdProcess& pushd = *node;
  {
    auto ws = ConnectUser(pushd, "hal");
    ASSERT_TRUE(ws);
  }
  // Once the events are past the retention and dropped (the log trims now and then), a resume
  // after the first one starts with RESYNC.
  std::optional<v1::PresenceEvent> resync;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!resync && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(300));
    PresenceWatcher w(pushd.grpc_port(), {}, 1);
    auto e = w.Next(milliseconds(2000));
    ASSERT_TRUE(e);
    if (e->kind() == Kind::RESYNC) resync = e;
  }
  ASSERT_TRUE(resync) << "no RESYNC for a resume point past the retention";
  PresenceWatcher w(pushd.grpc_port(), {}, 1);
  auto r = w.Next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind(), Kind::RESYNC);
  auto ws = ConnectUser(pushd, "ida");
  ASSERT_TRUE(ws);
  auto c = w.Next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->cursor(), r->cursor() + 1) << "RESYNC's cursor is where the events go on";
  auto ida = c->kind() == Kind::CONNECTED ? c : w.NextOf(Kind::CONNECTED);
  ASSERT_TRUE(ida);
  EXPECT_EQ(ida->user_id(), "ida");
  // A cursor the server never gave (past the newest) is RESYNC too.
  PresenceWatcher ahead(pushd.grpc_port(), {}, 1000000);
  auto r2 = ahead.Next();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->kind(), Kind::RESYNC);
}

TEST_P(PresenceTest, AWatcherThatFallsTooFarBehindIsEndedWithWhereToResume) {
  auto node = Start({"--presence_max_lag=100", "--presence_offline_delay=1h"});
  ASSERT_TRUE(node->started());
  PushdProcess& pushd = *node;
  // A small receive window and no reading: the server's writes stall and the watcher lags.
  PresenceWatcher slow(pushd.grpc_port(), {}, 0, /*window_bytes=*/1024, /*start_reading=*/false);
  PresenceWatcher fast(pushd.grpc_port());
  auto keep = ConnectUser(pushd, "jon");  // keeps the user online: 2 events per cycle below
  ASSERT_TRUE(keep);
  for (int i = 0; i < 200; ++i) {
    auto ws = ConnectUser(pushd, "jon");
    ASSERT_TRUE(ws);
    ws->Close();
  }
  // 2 + 200 x 2 events; the Redis log reports them in batches, a moment later.
  std::vector<v1::PresenceEvent> all;
  while (all.size() < 402u) {
    auto e = fast.Next(milliseconds(15000));
    if (!e) break;
    all.push_back(*e);
  }
  ASSERT_EQ(all.size(), 402u);
  // The slow watcher's stalled write has waited more than a second by now (the drain above
  // waited half a second past the last event): once it reads, it is found behind and ended.
  std::this_thread::sleep_for(milliseconds(1000));
  slow.StartReading();
  std::vector<v1::PresenceEvent> got = Drain(slow);
  auto status = slow.Ended(milliseconds(5000));
  ASSERT_TRUE(status);
  EXPECT_EQ(status->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status->error_message();
  ASSERT_FALSE(got.empty());
  ASSERT_LT(got.size(), all.size());
  const uint64_t last = got.back().cursor();
  EXPECT_NE(status->error_message().find("after=" + std::to_string(last)), std::string::npos)
      << status->error_message();
  // Resuming from there gives the rest, each once.
  PresenceWatcher resumed(pushd.grpc_port(), {}, last);
  std::vector<v1::PresenceEvent> rest = Drain(resumed);
  ASSERT_EQ(got.size() + rest.size(), all.size());
  for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i].cursor(), last + 1 + i);
  // The metrics: the events this process made, the streams open now, the one dropped.
  std::string metrics = HttpRequest(pushd.ws_port(), "GET", "/metrics").body;
  EXPECT_EQ(MetricValue(metrics, "pushd_presence_events_total"), 402u);
  EXPECT_EQ(MetricValue(metrics, "pushd_presence_watchers"), 2u);  // fast and resumed
  EXPECT_EQ(MetricValue(metrics, "pushd_presence_watcher_drops_total"), 1u);
}

TEST_P(PresenceTest, BadRequestsGetInvalidArgument) {
  auto node = Start();
  ASSERT_TRUE(node->started());
  PushdProcess& pushd = *node;
  PresenceWatcher w(pushd.grpc_port(), {"ok", "not ok!"});
  auto status = w.Ended(milliseconds(5000));
  ASSERT_TRUE(status);
  EXPECT_EQ(status->error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status->error_message().find("user_ids[1]"), std::string::npos)
      << status->error_message();
}

TEST_P(PresenceTest, TheDrainEndsWatchersWithUnavailableAndWhereToResume) {
  auto node = Start();
  ASSERT_TRUE(node->started());
  PushdProcess& pushd = *node;
  PresenceWatcher w(pushd.grpc_port());
  auto ws = ConnectUser(pushd, "kim");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(w.NextOf(Kind::ONLINE));
  pushd.Signal(SIGTERM);
  auto status = w.Ended(milliseconds(20000));
  ASSERT_TRUE(status);
  EXPECT_EQ(status->error_code(), grpc::StatusCode::UNAVAILABLE) << status->error_message();
  EXPECT_NE(status->error_message().find("after="), std::string::npos);
  EXPECT_EQ(pushd.Wait(30000), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, PresenceTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace push::testing
