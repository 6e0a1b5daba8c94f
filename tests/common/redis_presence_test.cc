// Presence on Redis (CONTRACT §6; common/redis/redis_presence.h), on a real redis-server and a
// real 3-primary Redis Cluster: "nodes" of a hub, a RedisPresence and a Feed each, on their own
// instances, with short delays and leases; every wait polls with a deadline.

#include "common/redis/redis_presence.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/metrics.h"
#include "common/redis/cluster_client.h"
#include "common/redis/cluster_slots.h"
#include "common/redis/redis_backend.h"
#include "common/redis/redis_client.h"
#include "common/redis/redis_schema.h"
#include "common/redis/router.h"
#include "gtest/gtest.h"
#include "tests/testing/fakes.h"
#include "tests/testing/redis_cluster.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/test_util.h"

namespace push {
namespace {

using presence::Event;
using presence::Feed;
using presence::Kind;
using push::testing::RecordingConnection;
using push::testing::RedisCluster;
using push::testing::RedisServer;
using push::testing::WaitFor;
using std::chrono::milliseconds;

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kConnected:
      return "CONNECTED";
    case Kind::kDisconnected:
      return "DISCONNECTED";
    case Kind::kOnline:
      return "ONLINE";
    case Kind::kOffline:
      return "OFFLINE";
    case Kind::kResync:
      return "RESYNC";
  }
  return "?";
}

// "KIND user conn device node reason", the empty ones as "-".
std::string Describe(const Event& e) {
  auto f = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  return absl::StrCat(KindName(e.kind), " ", f(e.user_id), " ", f(e.connection_id), " ",
                      f(e.device_id), " ", f(e.node_id), " ", f(e.reason));
}

// Everything the feed holds.
std::vector<Event> Held(const Feed& feed) {
  std::vector<Event> out;
  feed.Take(feed.first() - 1, 1 << 20, &out);
  return out;
}

std::vector<std::string> Described(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) out.push_back(Describe(e));
  return out;
}

// The events hold cursors growing by one.
void ExpectConsecutive(const std::vector<Event>& events) {
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].cursor, events[i - 1].cursor + 1) << Describe(events[i]);
  }
}

std::string RandomSuffix() {
  std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat(absl::Hex(rng(), absl::kZeroPad16));
}

struct NodeOptions {
  absl::Duration offline_delay = absl::Milliseconds(300);
  absl::Duration lease = absl::Seconds(15);
  absl::Duration retention = absl::Hours(1);
  size_t max_outbox = 100000;
  bool edge = true;  // reports its hub's connections
  bool tick = true;  // a ticker calls OnTick every 50 ms
};

// One pushd process's presence: its links (one Redis or a cluster), hub, feed and log.
class Node {
 public:
  // One Redis on `port`.
  Node(std::string node_id, int port, NodeOptions o) : node_id_(std::move(node_id)) {
    redis::ConnectionOptions c;
    c.endpoint.host = "127.0.0.1";
    c.endpoint.port = port;
    c.name = node_id_ + "-commands";
    c.scripts = RedisPresence::Scripts();
    c.min_backoff = absl::Milliseconds(20);
    c.max_backoff = absl::Milliseconds(200);
    redis::ConnectionOptions t;
    t.endpoint = c.endpoint;
    t.name = node_id_ + "-tail";
    t.command_timeout = absl::Seconds(5);
    t.min_backoff = c.min_backoff;
    t.max_backoff = c.max_backoff;
    commands_ = std::make_unique<redis::Connection>(std::move(c));
    tail_ = std::make_unique<redis::Connection>(std::move(t));
    commands_->Start();
    tail_->Start();
    router_ = std::make_unique<redis::ConnectionRouter>(commands_.get());
    tail_router_ = std::make_unique<redis::ConnectionRouter>(tail_.get());
    Init(o);
  }
  // A cluster with these seeds.
  Node(std::string node_id, const std::vector<redis::Endpoint>& seeds, NodeOptions o)
      : node_id_(std::move(node_id)) {
    redis::ClusterOptions c;
    c.seeds = seeds;
    c.name = node_id_ + "-commands";
    c.scripts = RedisPresence::Scripts();
    cluster_ = std::make_unique<redis::ClusterClient>(std::move(c));
    redis::ClusterOptions t;
    t.seeds = seeds;
    t.name = node_id_ + "-tail";
    t.command_timeout = absl::Seconds(5);
    tail_cluster_ = std::make_unique<redis::ClusterClient>(std::move(t));
    EXPECT_TRUE(cluster_->Start().ok());
    EXPECT_TRUE(tail_cluster_->Start().ok());
    router_ = std::make_unique<redis::ClusterRouter>(cluster_.get());
    tail_router_ = std::make_unique<redis::ClusterRouter>(tail_cluster_.get());
    Init(o);
  }
  ~Node() { Kill(); }

  // Gone without goodbye: no tick, no report, links closed.
  void Kill() {
    StopTicking();
    if (presence_) presence_->Stop();
    if (tail_cluster_) tail_cluster_->Stop();
    if (cluster_) cluster_->Stop();
    if (tail_) tail_->Stop();
    if (commands_) commands_->Stop();
  }
  void StopTicking() {
    stop_.store(true);
    if (ticker_.joinable()) ticker_.join();
  }

  std::shared_ptr<RecordingConnection> Connect(const std::string& user, const std::string& conn,
                                               const std::string& device = "") {
    ConnectionInfo info;
    info.user_id = user;
    info.connection_id = conn;
    info.device_id = device;
    info.connected_at = absl::Now();
    auto c = std::make_shared<RecordingConnection>(info, 0, 0);
    hub_.Add(c);
    return c;
  }
  void Close(const std::shared_ptr<RecordingConnection>& c, const std::string& reason) {
    hub_.Remove(*c, reason);
  }

  absl::StatusOr<presence::PresenceLog::Page> Read(uint64_t after, size_t max) {
    std::promise<absl::StatusOr<presence::PresenceLog::Page>> p;
    presence_->ReadLog(after, max, [&](absl::StatusOr<presence::PresenceLog::Page> page) {
      p.set_value(std::move(page));
    });
    return p.get_future().get();
  }

  // Waits until the feed holds at least `n` events; returns them.
  std::vector<Event> WaitEvents(size_t n, milliseconds timeout = milliseconds(10000)) {
    WaitFor([&] { return Held(*feed_).size() >= n; }, timeout);
    return Held(*feed_);
  }

  RedisPresence& presence() { return *presence_; }
  Feed& feed() { return *feed_; }
  const std::string& instance() const { return instance_; }
  const std::string& node_id() const { return node_id_; }

 private:
  void Init(const NodeOptions& o) {
    instance_ = absl::StrCat(node_id_, "-", RandomSuffix());
    feed_ = std::make_unique<Feed>(Feed::Options{});
    RedisPresenceOptions p;
    p.node_id = node_id_;
    p.instance = instance_;
    p.offline_delay = o.offline_delay;
    p.lease = o.lease;
    p.retention = o.retention;
    p.max_outbox = o.max_outbox;
    p.block = absl::Milliseconds(500);
    presence_ = std::make_unique<RedisPresence>(p, router_.get(), tail_router_.get(), feed_.get(),
                                                o.edge ? &hub_ : nullptr);
    if (o.edge) hub_.AddObserver(presence_.get());
    presence_->Start();
    // The ticker also starts the tail again until its link is up.
    ticker_ = std::thread([this, tick = o.tick] {
      while (!stop_.load() && (tick || !presence_->following())) {
        presence_->OnTick();
        std::this_thread::sleep_for(milliseconds(50));
      }
    });
    // The tail has read the log's newest (the feed starts there) before the test acts.
    EXPECT_TRUE(WaitFor([&] { return presence_->following(); })) << node_id_ << "'s tail";
  }

  const std::string node_id_;
  std::string instance_;
  std::unique_ptr<redis::Connection> commands_, tail_;
  std::unique_ptr<redis::ClusterClient> cluster_, tail_cluster_;
  std::unique_ptr<redis::Router> router_, tail_router_;
  Hub hub_;
  std::unique_ptr<Feed> feed_;
  std::unique_ptr<RedisPresence> presence_;
  std::atomic<bool> stop_{false};
  std::thread ticker_;
};

class RedisPresenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
    ASSERT_TRUE(redis_.running());
  }
  std::unique_ptr<Node> MakeNode(const std::string& node_id, NodeOptions o = {}) {
    return std::make_unique<Node>(node_id, redis_.port(), o);
  }

  RedisServer redis_;
};

// Every presence key is in one slot, so each script is one atomic step on one shard.
TEST(RedisPresenceSchemaTest, EveryPresenceKeySharesOneSlot) {
  const uint16_t slot = redis_schema::PresenceSlot();
  for (const std::string& key :
       {redis_schema::PresenceLogKey(), redis_schema::PresenceCounterKey(),
        redis_schema::PresenceUsersKey(), redis_schema::PresenceLeavingKey(),
        redis_schema::PresenceLastNodeKey(), redis_schema::PresenceInstancesKey(),
        redis_schema::PresenceInstanceKey("node-a-0123456789abcdef")}) {
    EXPECT_EQ(redis::KeySlot(key), slot) << key;
  }
  EXPECT_EQ(redis_schema::PresenceLogKey(), "pushd:{presence}:log");
  EXPECT_EQ(redis_schema::PresenceInstanceKey("i"), "pushd:{presence}:inst:i");
}

// Connect, close, and the delay: CONNECTED, ONLINE, DISCONNECTED, OFFLINE, cursors from 1 up by
// one, each once, with their fields.
TEST_F(RedisPresenceTest, ConnectAndCloseMakeTheFourEventsInOrder) {
  auto a = MakeNode("node-a");
  const uint64_t before = GlobalMetrics().presence_events.load();
  auto c = a->Connect("alice", "c1", "phone");
  auto events = a->WaitEvents(2);
  a->Close(c, "client closed");
  events = a->WaitEvents(4);
  EXPECT_EQ(Described(events),
            (std::vector<std::string>{
                "CONNECTED alice c1 phone node-a -", "ONLINE alice - - node-a -",
                "DISCONNECTED alice c1 phone node-a client closed", "OFFLINE alice - - node-a -"}));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].cursor, 1u);
  ExpectConsecutive(events);
  // OFFLINE comes the delay after the last connection closed (Redis's clock, ms).
  EXPECT_GE(events[3].at - events[2].at, absl::Milliseconds(300));
  EXPECT_LT(absl::AbsDuration(events[0].at - absl::Now()), absl::Seconds(10));
  // Counted when the script's reply comes back, which the tail may beat to the events.
  EXPECT_TRUE(WaitFor([&] { return GlobalMetrics().presence_events.load() - before >= 4u; }));
  // Nothing more comes.
  std::this_thread::sleep_for(milliseconds(600));
  EXPECT_EQ(GlobalMetrics().presence_events.load() - before, 4u);
  EXPECT_EQ(Held(a->feed()).size(), 4u);
  EXPECT_EQ(a->presence().outbox_size(), 0u);
}

// A page reload: the user's last connection closes and a new one opens within the delay: no
// OFFLINE, no second ONLINE; the OFFLINE comes once the new one closes.
TEST_F(RedisPresenceTest, AReconnectWithinTheDelayIsNeitherOfflineNorOnline) {
  NodeOptions o;
  o.offline_delay = absl::Milliseconds(800);
  auto a = MakeNode("node-a", o);
  auto c1 = a->Connect("bob", "c1");
  a->WaitEvents(2);
  a->Close(c1, "client closed");
  a->WaitEvents(3);
  auto c2 = a->Connect("bob", "c2");
  a->WaitEvents(4);
  std::this_thread::sleep_for(milliseconds(1500));  // well past the delay
  EXPECT_EQ(Described(Held(a->feed())),
            (std::vector<std::string>{"CONNECTED bob c1 - node-a -", "ONLINE bob - - node-a -",
                                      "DISCONNECTED bob c1 - node-a client closed",
                                      "CONNECTED bob c2 - node-a -"}));
  a->Close(c2, "deleted");
  auto events = a->WaitEvents(6);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(Describe(events[4]), "DISCONNECTED bob c2 - node-a deleted");
  EXPECT_EQ(Describe(events[5]), "OFFLINE bob - - node-a -");
  ExpectConsecutive(events);
}

// One user on two nodes: ONLINE once, OFFLINE only after both connections closed (from the
// node of the last one); both nodes' feeds hold the same log.
TEST_F(RedisPresenceTest, AUserOnTwoNodesGoesOfflineOnlyAfterBoth) {
  auto a = MakeNode("node-a");
  auto b = MakeNode("node-b");
  auto ca = a->Connect("carol", "ca");
  a->WaitEvents(2);
  auto cb = b->Connect("carol", "cb", "laptop");
  a->WaitEvents(3);
  a->Close(ca, "client closed");
  a->WaitEvents(4);
  std::this_thread::sleep_for(milliseconds(900));  // three delays: still online on b
  EXPECT_EQ(Held(a->feed()).size(), 4u);
  b->Close(cb, "client closed");
  auto events = a->WaitEvents(6);
  EXPECT_EQ(
      Described(events),
      (std::vector<std::string>{
          "CONNECTED carol ca - node-a -", "ONLINE carol - - node-a -",
          "CONNECTED carol cb laptop node-b -", "DISCONNECTED carol ca - node-a client closed",
          "DISCONNECTED carol cb laptop node-b client closed", "OFFLINE carol - - node-b -"}));
  ExpectConsecutive(events);
  ASSERT_TRUE(WaitFor([&] { return Held(b->feed()).size() >= 6; }));
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(Described(Held(b->feed())), Described(events));
  EXPECT_EQ(Held(b->feed()).back().cursor, events.back().cursor);
}

// A node that dies without goodbye: once its lease runs out, the other nodes' sweeps make
// DISCONNECTED "node lost" for each of its connections (its node id), and OFFLINE for the users
// it alone held, each once though two nodes sweep.
TEST_F(RedisPresenceTest, ADeadNodesConnectionsAreLostOnceWhenItsLeaseRunsOut) {
  NodeOptions o;
  o.lease = absl::Seconds(1);
  auto a = MakeNode("node-a", o);
  auto b = MakeNode("node-b", o);
  auto w = MakeNode("watcher", [&] {
    NodeOptions api = o;
    api.edge = false;  // an API-only node: it sweeps too
    return api;
  }());
  auto a1 = a->Connect("dave", "a1");
  auto a2 = a->Connect("dave", "a2", "tablet");
  auto a3 = a->Connect("erin", "a3");
  auto b1 = b->Connect("erin", "b1");
  ASSERT_EQ(w->WaitEvents(6).size(), 6u);  // 4 CONNECTED, 2 ONLINE
  const auto killed = std::chrono::steady_clock::now();
  a->Kill();
  auto events = w->WaitEvents(10, milliseconds(15000));
  ASSERT_GE(events.size(), 10u) << ::testing::PrintToString(Described(events));
  EXPECT_LT(push::testing::MillisSince(killed), 5000);
  std::vector<std::string> tail(Described(events));
  tail.erase(tail.begin(), tail.begin() + 6);
  EXPECT_EQ(tail, (std::vector<std::string>{"DISCONNECTED dave a1 - node-a node lost",
                                            "DISCONNECTED dave a2 tablet node-a node lost",
                                            "DISCONNECTED erin a3 - node-a node lost",
                                            "OFFLINE dave - - node-a -"}));
  ExpectConsecutive(events);
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(Held(w->feed()).size(), 10u);  // each once; erin is still on b
  EXPECT_EQ(redis_.Command({"HEXISTS", redis_schema::PresenceInstancesKey(), a->instance()}), "0");
  EXPECT_EQ(redis_.Command({"EXISTS", redis_schema::PresenceInstanceKey(a->instance())}), "0");
  b->Close(b1, "client closed");
  events = w->WaitEvents(12);
  EXPECT_EQ(Describe(events.back()), "OFFLINE erin - - node-b -");
}

// NodeLost run by two nodes at once on an instance with more connections than one sweep takes:
// every connection DISCONNECTED "node lost" exactly once, every user OFFLINE exactly once.
TEST_F(RedisPresenceTest, NodeLostOnTwoNodesAtOnceEndsEachConnectionOnce) {
  auto a = MakeNode("node-a");
  auto b = MakeNode("node-b");
  auto c = MakeNode("node-c");
  constexpr int kConnections = 1200;  // more than two sweeps' worth (500 each)
  std::vector<std::shared_ptr<RecordingConnection>> held;
  for (int i = 0; i < kConnections; ++i) {
    held.push_back(a->Connect(absl::StrCat("user", i % 300), absl::StrCat("conn", i)));
  }
  ASSERT_EQ(b->WaitEvents(kConnections + 300).size(), kConnections + 300u);
  a->StopTicking();  // its lease (15 s) still runs: only NodeLost ends it
  std::thread t1([&] { b->presence().NodeLost(a->instance()); });
  std::thread t2([&] { c->presence().NodeLost(a->instance()); });
  t1.join();
  t2.join();
  const size_t total = 2 * kConnections + 2 * 300;
  auto events = b->WaitEvents(total, milliseconds(20000));
  std::this_thread::sleep_for(milliseconds(800));
  events = Held(b->feed());
  ASSERT_EQ(events.size(), total);
  ExpectConsecutive(events);
  std::map<std::string, int> lost, offline;
  for (const Event& e : events) {
    if (e.kind == Kind::kDisconnected) {
      EXPECT_EQ(e.reason, "node lost");
      EXPECT_EQ(e.node_id, "node-a");
      ++lost[e.connection_id];
    }
    if (e.kind == Kind::kOffline) ++offline[e.user_id];
  }
  EXPECT_EQ(lost.size(), static_cast<size_t>(kConnections));
  for (const auto& [conn, n] : lost) EXPECT_EQ(n, 1) << conn;
  EXPECT_EQ(offline.size(), 300u);
  for (const auto& [user, n] : offline) EXPECT_EQ(n, 1) << user;
  EXPECT_EQ(Described(c->WaitEvents(total)), Described(events));  // c's tail in its own time
}

// A node taken for dead that is alive after all (a long pause): it finds its lease gone and
// reports its live connections again (CONNECTED, ONLINE), so presence is right again.
// Within the offline delay, so the user is never OFFLINE.
TEST_F(RedisPresenceTest, ANodeTakenForDeadReportsItsConnectionsAgain) {
  NodeOptions o;
  o.offline_delay = absl::Seconds(3);
  auto a = MakeNode("node-a", o);
  auto b = MakeNode("node-b", o);
  auto a1 = a->Connect("fay", "a1");
  ASSERT_EQ(b->WaitEvents(2).size(), 2u);
  b->presence().NodeLost(a->instance());
  auto events = b->WaitEvents(4);
  EXPECT_EQ(Described(events),
            (std::vector<std::string>{"CONNECTED fay a1 - node-a -", "ONLINE fay - - node-a -",
                                      "DISCONNECTED fay a1 - node-a node lost",
                                      "CONNECTED fay a1 - node-a -"}));
  a->Close(a1, "client closed");
  events = b->WaitEvents(6);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(Describe(events[4]), "DISCONNECTED fay a1 - node-a client closed");
  EXPECT_EQ(Describe(events[5]), "OFFLINE fay - - node-a -");
  ExpectConsecutive(events);
}

// Reads older than the feed: from the log (XRANGE), or RESYNC once they were trimmed (by
// --presence_retention), and RESYNC from the newest for a cursor past it.
TEST_F(RedisPresenceTest, ReadLogGivesTheLogAndResyncsWhereItWasTrimmed) {
  NodeOptions o;
  o.retention = absl::Milliseconds(1500);
  auto a = MakeNode("node-a", o);
  auto c1 = a->Connect("gus", "c1");
  auto c2 = a->Connect("gus", "c2");
  ASSERT_EQ(a->WaitEvents(3).size(), 3u);
  auto page = a->Read(1, 10);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_FALSE(page->resync);
  EXPECT_EQ(Described(page->events),
            (std::vector<std::string>{"ONLINE gus - - node-a -", "CONNECTED gus c2 - node-a -"}));
  page = a->Read(0, 1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 1u);
  EXPECT_EQ(page->events[0].cursor, 1u);
  page = a->Read(3, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_FALSE(page->resync);
  EXPECT_TRUE(page->events.empty());
  page = a->Read(9, 10);  // past the newest
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->resync);
  EXPECT_EQ(page->resync_from, 3u);

  std::this_thread::sleep_for(milliseconds(2000));  // the three are past the retention
  a->Close(c1, "client closed");                    // cursor 4, kept
  ASSERT_EQ(a->WaitEvents(4).size(), 4u);
  ASSERT_TRUE(WaitFor([&] {
    return redis_.Command({"XLEN", redis_schema::PresenceLogKey()}) == "1";
  })) << redis_.Command({"XLEN", redis_schema::PresenceLogKey()});
  page = a->Read(1, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->resync);
  EXPECT_EQ(page->resync_from, 3u);  // the events go on after 3
  EXPECT_TRUE(page->events.empty());
  page = a->Read(3, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_FALSE(page->resync);
  EXPECT_EQ(Described(page->events),
            (std::vector<std::string>{"DISCONNECTED gus c1 - node-a client closed"}));
}

// Reports made while Redis is down wait in the outbox and arrive once it is back, in order,
// none twice.
TEST_F(RedisPresenceTest, ReportsWaitForARedisRestart) {
  auto a = MakeNode("node-a");
  auto w = MakeNode("watcher", [] {
    NodeOptions api;
    api.edge = false;
    return api;
  }());
  auto c0 = a->Connect("hal", "c0");
  ASSERT_EQ(w->WaitEvents(2).size(), 2u);
  redis_.Stop();
  auto c1 = a->Connect("ida", "c1");
  auto c2 = a->Connect("ida", "c2");
  a->Close(c0, "client closed");
  a->Close(c2, "client closed");
  std::this_thread::sleep_for(milliseconds(500));  // some batches fail meanwhile
  EXPECT_EQ(a->presence().outbox_size(), 4u);
  ASSERT_TRUE(redis_.Start());
  auto events = w->WaitEvents(8);
  EXPECT_EQ(Described(events),
            (std::vector<std::string>{
                "CONNECTED hal c0 - node-a -", "ONLINE hal - - node-a -",
                "CONNECTED ida c1 - node-a -", "ONLINE ida - - node-a -",
                "CONNECTED ida c2 - node-a -", "DISCONNECTED hal c0 - node-a client closed",
                "DISCONNECTED ida c2 - node-a client closed", "OFFLINE hal - - node-a -"}));
  ExpectConsecutive(events);
  std::this_thread::sleep_for(milliseconds(800));
  EXPECT_EQ(Held(w->feed()).size(), 8u);
  // The outbox empties when the script's reply comes back, which the tail may beat.
  EXPECT_TRUE(WaitFor([&] { return a->presence().outbox_size() == 0u; }));
}

// Past the outbox's bound reports are dropped (and counted); once Redis answers, the instance's
// set is made right against the hub: every live connection CONNECTED once, the closed ones
// DISCONNECTED.
TEST_F(RedisPresenceTest, DroppedReportsAreRepairedFromTheHub) {
  NodeOptions o;
  o.max_outbox = 2;
  auto a = MakeNode("node-a", o);
  auto keep = a->Connect("jan", "k0");
  auto gone = a->Connect("kim", "g0");
  ASSERT_EQ(a->WaitEvents(4).size(), 4u);
  redis_.Stop();
  const uint64_t dropped = GlobalMetrics().presence_reports_dropped.load();
  std::vector<std::shared_ptr<RecordingConnection>> more;
  for (int i = 1; i <= 4; ++i) more.push_back(a->Connect("jan", absl::StrCat("k", i)));
  a->Close(gone, "client closed");
  EXPECT_EQ(a->presence().outbox_size(), 2u);
  EXPECT_EQ(GlobalMetrics().presence_reports_dropped.load() - dropped, 3u);
  ASSERT_TRUE(redis_.Start());
  // k1, k2 from the outbox; the repair: k3, k4 CONNECTED, g0 DISCONNECTED "closed".
  auto events = a->WaitEvents(10);
  std::this_thread::sleep_for(milliseconds(800));
  events = Held(a->feed());
  std::vector<std::string> after(Described(events));
  after.erase(after.begin(), after.begin() + 4);
  EXPECT_EQ(after, (std::vector<std::string>{
                       "CONNECTED jan k1 - node-a -", "CONNECTED jan k2 - node-a -",
                       "CONNECTED jan k3 - node-a -", "CONNECTED jan k4 - node-a -",
                       "DISCONNECTED kim g0 - node-a closed", "OFFLINE kim - - node-a -"}))
      << "k3/k4 order follows the hub";
  ExpectConsecutive(events);
}

// Graceful shutdown: the drain's DISCONNECTEDs are in Redis when Flush returns, and the lease
// is given up (no "node lost" later).
TEST_F(RedisPresenceTest, FlushSendsEverythingAndGivesUpTheLease) {
  NodeOptions o;
  o.offline_delay = absl::Seconds(5);  // no OFFLINE during the test
  auto a = MakeNode("node-a", o);
  std::vector<std::shared_ptr<RecordingConnection>> cs;
  for (int i = 0; i < 50; ++i) cs.push_back(a->Connect("lea", absl::StrCat("c", i)));
  for (auto& c : cs) a->Close(c, "shutdown");
  ASSERT_TRUE(a->presence().Flush(absl::Seconds(5)));
  EXPECT_EQ(a->presence().outbox_size(), 0u);
  EXPECT_EQ(redis_.Command({"GET", redis_schema::PresenceCounterKey()}), "101");
  EXPECT_EQ(redis_.Command({"HEXISTS", redis_schema::PresenceInstancesKey(), a->instance()}), "0");
}

// RedisBackend with presence: the edge process reports its hub's connections, an API-only process
// (edge = false) follows the log and serves reads but reports nothing; both tick (OFFLINE).
TEST_F(RedisPresenceTest, RedisBackendWiresPresenceOnEdgeAndApiProcesses) {
  auto options = [&](const std::string& node, bool edge, Feed* feed) {
    RedisBackendOptions o;
    o.endpoint.host = "127.0.0.1";
    o.endpoint.port = redis_.port();
    o.node_id = node;
    o.edge = edge;
    o.presence = true;
    o.feed = feed;
    o.presence_offline_delay = absl::Milliseconds(300);
    return o;
  };
  Feed edge_feed(Feed::Options{}), api_feed(Feed::Options{});
  Hub edge_hub, api_hub;
  RedisBackend edge(options("edge-1", true, &edge_feed), &edge_hub);
  RedisBackend api(options("api-1", false, &api_feed), &api_hub);
  ASSERT_TRUE(edge.Start(absl::Seconds(5)).ok());
  ASSERT_TRUE(api.Start(absl::Seconds(5)).ok());
  ASSERT_NE(edge.presence(), nullptr);
  ASSERT_NE(api.presence(), nullptr);
  ASSERT_TRUE(WaitFor([&] { return edge.presence()->following() && api.presence()->following(); }));
  ConnectionInfo info;
  info.user_id = "olga";
  info.connection_id = "c1";
  auto c = std::make_shared<RecordingConnection>(info, 0, 0);
  edge_hub.Add(c);
  ASSERT_TRUE(WaitFor([&] { return Held(api_feed).size() >= 2; }));
  edge_hub.Remove(*c, "shutdown");
  EXPECT_TRUE(edge.Flush(absl::Seconds(5)));
  ASSERT_TRUE(WaitFor([&] { return Held(api_feed).size() >= 4; }));  // OFFLINE by a tick (1 s)
  EXPECT_EQ(Described(Held(api_feed)),
            (std::vector<std::string>{"CONNECTED olga c1 - edge-1 -", "ONLINE olga - - edge-1 -",
                                      "DISCONNECTED olga c1 - edge-1 shutdown",
                                      "OFFLINE olga - - edge-1 -"}));
  std::promise<absl::StatusOr<presence::PresenceLog::Page>> p;
  api.presence()->ReadLog(0, 10, [&](absl::StatusOr<presence::PresenceLog::Page> page) {
    p.set_value(std::move(page));
  });
  auto page = p.get_future().get();
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Described(page->events), Described(Held(api_feed)));
  ASSERT_TRUE(WaitFor([&] { return Held(edge_feed).size() >= 4; }));
  // The API-only process holds no lease: it reports nothing.
  EXPECT_EQ(redis_.Command({"HLEN", redis_schema::PresenceInstancesKey()}), "0");
  api.Stop();
  edge.Stop();
}

// The same on a 3-primary Redis Cluster: a node reports, an API-only watcher on another
// instance follows the log in its feed and reads it; a dead node's connections are lost.
class RedisPresenceClusterTest : public push::testing::RedisClusterSuite {};

TEST_F(RedisPresenceClusterTest, EventsReachAWatcherOnAnotherInstance) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  auto seeds = redis::ParseSeeds(cluster.seeds());
  ASSERT_TRUE(seeds.ok());
  NodeOptions o;
  o.lease = absl::Seconds(1);
  Node a("node-a", *seeds, o);
  Node b("node-b", *seeds, o);
  NodeOptions api = o;
  api.edge = false;
  Node w("watcher", *seeds, api);
  auto c1 = a.Connect("mia", "c1", "phone");
  auto c2 = b.Connect("ned", "c2");
  ASSERT_EQ(w.WaitEvents(4).size(), 4u);
  a.Close(c1, "client closed");
  auto events = w.WaitEvents(6);
  std::vector<std::string> got(Described(events));
  std::sort(got.begin(), got.begin() + 4);  // the two nodes' reports race
  EXPECT_EQ(got,
            (std::vector<std::string>{
                "CONNECTED mia c1 phone node-a -", "CONNECTED ned c2 - node-b -",
                "ONLINE mia - - node-a -", "ONLINE ned - - node-b -",
                "DISCONNECTED mia c1 phone node-a client closed", "OFFLINE mia - - node-a -"}));
  ExpectConsecutive(events);
  auto page = w.Read(events[0].cursor - 1, 100);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Described(page->events), Described(events));
  b.Kill();
  events = w.WaitEvents(8, milliseconds(15000));
  ASSERT_EQ(events.size(), 8u);
  EXPECT_EQ(Describe(events[6]), "DISCONNECTED ned c2 - node-b node lost");
  EXPECT_EQ(Describe(events[7]), "OFFLINE ned - - node-b -");
  // node-a follows the same log on its own tail: it reaches the same 8 in its own time.
  EXPECT_EQ(Described(a.WaitEvents(8)), Described(events));
}

}  // namespace
}  // namespace push
