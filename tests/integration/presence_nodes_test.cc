// Presence across nodes (CONTRACT §6, issue 15): several real pushd processes on one real
// redis-server, and on a real 3-primary Redis Cluster; watchers on one node see the connections
// of every node, in one cursor order; a node killed without goodbye yields DISCONNECTED
// ("node lost") for each of its connections and OFFLINE where due, within 30 s.

#include <signal.h>

#include <boost/json.hpp>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/presence_watcher.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/redis_cluster.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using Kind = v1::PresenceEvent;

// The backend every node of a test shares: one redis-server ("redis") or a cluster ("cluster").
class PresenceNodesTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cluster") {
      ASSERT_TRUE(RedisCluster::Available()) << "redis-server or redis-cli is not installed";
      cluster_ = std::make_unique<RedisCluster>();
      ASSERT_TRUE(cluster_->ready());
    } else {
      ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
      redis_ = std::make_unique<RedisServer>();
      ASSERT_TRUE(redis_->running());
    }
  }

  std::unique_ptr<PushdProcess> Node(const std::string& node_id,
                                     std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--node_id=" + node_id};
    args.push_back(cluster_ ? "--redis_cluster=" + cluster_->seeds() : "--redis=" + redis_->url());
    args.insert(args.end(), extra.begin(), extra.end());
    auto node = std::make_unique<PushdProcess>(args);
    EXPECT_TRUE(node->started()) << node_id;
    return node;
  }

  // Opens /ws?user_id=<user> with a RawClient (one descriptor, no thread) and reads the welcome;
  // returns the client (null and a failure otherwise).
  static std::unique_ptr<RawClient> OpenRaw(int port, const std::string& user) {
    auto raw = RawClient::Connect(port);
    if (!raw || raw->Upgrade("/ws?user_id=" + user) != 101) {
      ADD_FAILURE() << "cannot open a connection of " << user;
      return nullptr;
    }
    auto frame = raw->ReadFrame();
    if (!frame || frame->payload.find("\"welcome\"") == std::string::npos) {
      ADD_FAILURE() << "no welcome for " << user;
      return nullptr;
    }
    return raw;
  }

  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<RedisCluster> cluster_;
};

std::string Describe(const v1::PresenceEvent& e) {
  return std::to_string(e.cursor()) + " " + Kind::Kind_Name(e.kind()) + " " + e.user_id() + " " +
         e.node_id() + " " + e.reason();
}

TEST_P(PresenceNodesTest, AWatcherOnOneNodeSeesEveryNodesConnectionsInOneOrder) {
  auto a = Node("node-a", {"--presence_offline_delay=1s"});
  auto b = Node("node-b", {"--presence_offline_delay=1s"});
  PresenceWatcher on_a(a->grpc_port());
  PresenceWatcher on_b(b->grpc_port());
  auto tab_b = ConnectUser(*b, "lea");
  ASSERT_TRUE(tab_b);
  auto c = on_a.Next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind(), Kind::CONNECTED) << Describe(*c);
  EXPECT_EQ(c->node_id(), "node-b");
  auto online = on_a.Next();
  ASSERT_TRUE(online);
  EXPECT_EQ(online->kind(), Kind::ONLINE) << Describe(*online);
  EXPECT_EQ(online->cursor(), c->cursor() + 1);
  // A second tab on the other node: CONNECTED only; the first closing: no OFFLINE.
  auto tab_a = ConnectUser(*a, "lea");
  ASSERT_TRUE(tab_a);
  auto c2 = on_a.Next();
  ASSERT_TRUE(c2);
  EXPECT_EQ(c2->kind(), Kind::CONNECTED) << Describe(*c2);
  EXPECT_EQ(c2->node_id(), "node-a");
  tab_b->Close();
  auto d = on_a.Next();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->kind(), Kind::DISCONNECTED) << Describe(*d);
  EXPECT_FALSE(on_a.Next(milliseconds(2500))) << "no OFFLINE while a tab is open on node-a";
  // The last tab anywhere closes: OFFLINE after the delay.
  tab_a->Close();
  auto d2 = on_a.Next();
  ASSERT_TRUE(d2);
  EXPECT_EQ(d2->kind(), Kind::DISCONNECTED) << Describe(*d2);
  auto off = on_a.Next(milliseconds(10000));
  ASSERT_TRUE(off);
  EXPECT_EQ(off->kind(), Kind::OFFLINE) << Describe(*off);
  EXPECT_EQ(off->cursor(), d2->cursor() + 1);
  // The watcher on the other node saw the very same events. Node-b follows the log on its own
  // tail, in its own time: each of the 6 is waited for, then a second's quiet shows no more.
  std::vector<v1::PresenceEvent> seen_on_b;
  while (seen_on_b.size() < 6u) {
    auto e = on_b.Next(milliseconds(10000));
    if (!e) break;
    seen_on_b.push_back(*e);
  }
  while (auto e = on_b.Next(milliseconds(1000))) seen_on_b.push_back(*e);
  std::vector<uint64_t> cursors;
  for (auto& e : seen_on_b) cursors.push_back(e.cursor());
  ASSERT_EQ(seen_on_b.size(), 6u);
  EXPECT_EQ(seen_on_b.front().SerializeAsString(), c->SerializeAsString());
  EXPECT_EQ(seen_on_b.back().SerializeAsString(), off->SerializeAsString());
  for (size_t i = 1; i < cursors.size(); ++i) EXPECT_EQ(cursors[i], cursors[0] + i);
}

TEST_P(PresenceNodesTest, AWatcherResumesOnAnotherNodeWithoutLossOrRepeat) {
  auto a = Node("node-a", {"--presence_offline_delay=200ms"});
  auto b = Node("node-b", {"--presence_offline_delay=200ms"});
  PresenceWatcher reference(b->grpc_port());
  uint64_t last = 0;
  {
    PresenceWatcher first(a->grpc_port());
    auto ws = ConnectUser(*a, "max");
    ASSERT_TRUE(ws);
    auto e = first.NextOf(Kind::ONLINE);
    ASSERT_TRUE(e);
    last = e->cursor();
  }
  for (int i = 0; i < 4; ++i) {
    auto ws = ConnectUser(i % 2 ? *a : *b, "ned" + std::to_string(i));
    ASSERT_TRUE(ws);
  }
  // 5 users: CONNECTED, ONLINE, DISCONNECTED, OFFLINE. The OFFLINEs come at the first sweep
  // past the delay (a tick a second), so each event is waited for; then 2 s of quiet show that
  // no more came.
  std::vector<v1::PresenceEvent> want;
  while (want.size() < 20u) {
    auto e = reference.Next(milliseconds(10000));
    if (!e) break;
    want.push_back(*e);
  }
  while (auto e = reference.Next(milliseconds(2000))) want.push_back(*e);
  ASSERT_EQ(want.size(), 20u);
  PresenceWatcher resumed(b->grpc_port(), {}, last);
  std::vector<v1::PresenceEvent> expected;
  for (auto& e : want) {
    if (e.cursor() > last) expected.push_back(e);
  }
  std::vector<v1::PresenceEvent> got;
  while (got.size() < expected.size()) {
    auto e = resumed.Next(milliseconds(10000));
    if (!e) break;
    got.push_back(*e);
  }
  while (auto e = resumed.Next(milliseconds(1000))) got.push_back(*e);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].SerializeAsString(), expected[i].SerializeAsString()) << Describe(got[i]);
  }
}

TEST_P(PresenceNodesTest, ANodeKilledWithAHundredConnectionsIsReportedWithin30Seconds) {
  // The raw clients answer no ping: no heartbeat may close them while the test runs.
  auto a = Node("node-a", {"--presence_offline_delay=1s", "--ping_interval=10m"});
  auto b = Node("node-b", {"--presence_offline_delay=1s", "--ping_interval=10m"});
  PresenceWatcher watcher(a->grpc_port());
  std::vector<std::unique_ptr<RawClient>> on_b;
  for (int i = 0; i < 100; ++i) {
    on_b.push_back(OpenRaw(b->ws_port(), "k" + std::to_string(i)));
    ASSERT_TRUE(on_b.back());
  }
  // One user also has a tab on the node that lives: it must not go OFFLINE.
  auto stays = OpenRaw(a->ws_port(), "k0");
  ASSERT_TRUE(stays);
  std::map<std::string, int> connected;
  while (connected.size() < 100 || connected["k0"] < 2) {
    auto e = watcher.Next(milliseconds(10000));
    ASSERT_TRUE(e) << "CONNECTED seen for " << connected.size() << " users";
    if (e->kind() == Kind::CONNECTED) ++connected[e->user_id()];
  }
  b->Signal(SIGKILL);
  auto killed = steady_clock::now();
  std::set<std::string> lost, offline;
  while ((lost.size() < 100 || offline.size() < 99) && steady_clock::now() - killed < seconds(30)) {
    auto e = watcher.Next(milliseconds(1000));
    if (!e) continue;
    if (e->kind() == Kind::DISCONNECTED) {
      EXPECT_EQ(e->reason(), "node lost") << Describe(*e);
      EXPECT_EQ(e->node_id(), "node-b") << Describe(*e);
      EXPECT_TRUE(lost.insert(e->user_id()).second) << "twice: " << Describe(*e);
    } else if (e->kind() == Kind::OFFLINE) {
      EXPECT_NE(e->user_id(), "k0") << "k0 still has a tab on node-a";
      EXPECT_TRUE(lost.count(e->user_id())) << "OFFLINE before DISCONNECTED: " << Describe(*e);
      offline.insert(e->user_id());
    } else {
      ADD_FAILURE() << "unexpected " << Describe(*e);
    }
  }
  auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - killed);
  std::cout << "all DISCONNECTED and OFFLINE after " << took.count() << " ms\n";
  EXPECT_EQ(lost.size(), 100u) << "after " << took.count() << " ms";
  EXPECT_EQ(offline.size(), 99u) << "after " << took.count() << " ms";
  EXPECT_LE(took, seconds(30));
  // Nothing more: each connection was reported once, k0 stays online.
  if (auto extra = watcher.Next(milliseconds(3000))) ADD_FAILURE() << "then " << Describe(*extra);
}

TEST_P(PresenceNodesTest, AnApiOnlyNodeServesWatchersOfTheEdgeNodesConnections) {
  auto api = Node("api-1", {"--role=api", "--presence_offline_delay=300ms"});
  auto edge = Node("edge-1", {"--role=edge", "--presence_offline_delay=300ms"});
  PresenceWatcher watcher(api->grpc_port(), {"ola"});
  {
    auto ws = ConnectUser(*edge, "ola", "&device_id=tablet");
    ASSERT_TRUE(ws);
    auto c = watcher.Next();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind(), Kind::CONNECTED) << Describe(*c);
    EXPECT_EQ(c->node_id(), "edge-1");
    EXPECT_EQ(c->device_id(), "tablet");
  }
  std::vector<v1::PresenceEvent> skipped;
  auto off = watcher.NextOf(Kind::OFFLINE, milliseconds(10000), &skipped);
  ASSERT_TRUE(off);
  ASSERT_EQ(skipped.size(), 2u);  // ONLINE, DISCONNECTED
  EXPECT_EQ(skipped[1].kind(), Kind::DISCONNECTED);
  EXPECT_EQ(skipped[1].device_id(), "tablet");
}

INSTANTIATE_TEST_SUITE_P(Backends, PresenceNodesTest, ::testing::Values("redis", "cluster"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace push::testing
