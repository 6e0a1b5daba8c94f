// The Redis Cluster the cluster tests run on (tests/testing/redis_cluster.h), and the slot
// logic of common/redis/cluster_slots.h checked against real redis-server 7 nodes: the slot
// map, key slots, MOVED and ASK as the servers write them, a slot migration and a failover.

#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/redis/cluster_slots.h"
#include "gtest/gtest.h"
#include "tests/testing/redis_cluster.h"

namespace push::testing {
namespace {

using redis::Value;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Keys whose slots are compared with the servers', hash-tagged ones included.
const std::vector<std::string> kKeys = {
    "",
    "foo",
    "bar",
    "123456789",
    "user:alice",
    "{user1000}.following",
    "{user1000}.followers",
    "foo{}{bar}",
    "foo{{bar}}zap",
    "foo{bar}{zap}",
    "{u:42}:stream",
    "{u:42}:cursors",
    "}{x}",
    "a-much-longer-key-that-spans-several-crc-table-steps-0123456789",
};

class RedisClusterFixtureTest : public RedisClusterSuite {
 protected:
  static std::unique_ptr<RedisCluster> Own() {
    auto cluster = std::make_unique<RedisCluster>();
    std::cout << "cluster of " << cluster->ports().size() << " nodes up in "
              << cluster->start_time().count() << " ms" << std::endl;
    return cluster;
  }
};

TEST_F(RedisClusterFixtureTest, StartsWithThreePrimariesAndThreeReplicas) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  std::cout << "cluster up in " << cluster.start_time().count() << " ms" << std::endl;

  std::vector<int> ports = cluster.ports();
  ASSERT_EQ(ports.size(), 6u);
  EXPECT_EQ(std::set<int>(ports.begin(), ports.end()).size(), 6u);
  EXPECT_EQ(cluster.NodesWithRole(RedisCluster::Role::kPrimary).size(), 3u);
  EXPECT_EQ(cluster.NodesWithRole(RedisCluster::Role::kReplica).size(), 3u);
  std::string expected_seeds;
  for (int port : ports) {
    EXPECT_TRUE(cluster.running(port));
    EXPECT_EQ(cluster.ClusterInfoField(port, "cluster_state"), "ok");
    EXPECT_EQ(cluster.ClusterInfoField(port, "cluster_known_nodes"), "6");
    if (!expected_seeds.empty()) expected_seeds += ",";
    expected_seeds += "127.0.0.1:";
    expected_seeds += std::to_string(port);
  }
  EXPECT_EQ(cluster.seeds(), expected_seeds);
}

TEST_F(RedisClusterFixtureTest, ParseClusterSlotsCoversEverySlotWithThreeShards) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  std::vector<int> primaries = cluster.NodesWithRole(RedisCluster::Role::kPrimary);
  std::vector<int> replicas = cluster.NodesWithRole(RedisCluster::Role::kReplica);
  for (int port : cluster.ports()) {
    // The reply as the servers send it, read with the parser pushd uses.
    Value reply = cluster.Command(port, {"CLUSTER", "SLOTS"});
    absl::StatusOr<redis::SlotMap> map = redis::ParseClusterSlots(reply, "127.0.0.1");
    ASSERT_TRUE(map.ok()) << "node " << port << ": " << map.status();
    EXPECT_EQ(map->assigned_slots(), redis::kClusterSlots);
    ASSERT_EQ(map->shards().size(), 3u) << "node " << port;
    std::set<int> seen_primaries, seen_replicas;
    for (const redis::Shard& shard : map->shards()) {
      EXPECT_EQ(shard.primary.host, "127.0.0.1");
      EXPECT_EQ(shard.primary_id.size(), 40u);  // node ids are 40 hex characters
      seen_primaries.insert(shard.primary.port);
      ASSERT_EQ(shard.replicas.size(), 1u);
      EXPECT_EQ(shard.replicas[0].host, "127.0.0.1");
      seen_replicas.insert(shard.replicas[0].port);
    }
    EXPECT_EQ(seen_primaries, std::set<int>(primaries.begin(), primaries.end()));
    EXPECT_EQ(seen_replicas, std::set<int>(replicas.begin(), replicas.end()));
    for (int slot = 0; slot < redis::kClusterSlots; ++slot) {
      ASSERT_NE(map->ShardForSlot(static_cast<uint16_t>(slot)), nullptr) << slot;
    }
  }
}

TEST_F(RedisClusterFixtureTest, KeySlotAgreesWithTheServers) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  int port = cluster.ports()[0];
  for (const std::string& key : kKeys) {
    Value slot = cluster.Command(port, {"CLUSTER", "KEYSLOT", key});
    ASSERT_EQ(slot.type, Value::Type::kInteger) << key << ": " << slot.str;
    EXPECT_EQ(redis::KeySlot(key), slot.integer) << "key '" << key << "'";
  }
}

TEST_F(RedisClusterFixtureTest, MovedFromAWrongNodeNamesTheOwner) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  std::vector<int> primaries = cluster.NodesWithRole(RedisCluster::Role::kPrimary);
  for (const std::string& key : kKeys) {
    uint16_t slot = redis::KeySlot(key);
    int owner = cluster.PrimaryOf(slot);
    ASSERT_NE(owner, 0) << key;
    for (int port : primaries) {
      Value reply = cluster.Command(port, {"GET", key});
      if (port == owner) {
        EXPECT_NE(reply.type, Value::Type::kError) << reply.str;
        continue;
      }
      ASSERT_EQ(reply.type, Value::Type::kError) << "node " << port << " answered for " << key;
      std::optional<redis::Redirect> redirect = redis::ParseRedirect(reply.str);
      ASSERT_TRUE(redirect.has_value()) << reply.str;
      EXPECT_EQ(redirect->kind, redis::Redirect::Kind::kMoved);
      EXPECT_EQ(redirect->slot, slot);
      EXPECT_EQ(redirect->endpoint.host, "127.0.0.1");
      EXPECT_EQ(redirect->endpoint.port, owner) << reply.str;
    }
  }
}

TEST_F(RedisClusterFixtureTest, ASlotMigratesWithAskOnTheWay) {
  std::unique_ptr<RedisCluster> cluster = Own();
  ASSERT_TRUE(cluster->ready()) << cluster->last_error();
  const std::string kept = "{u:42}:stream";    // exists before the move
  const std::string added = "{u:42}:cursors";  // written while the slot is migrating
  const uint16_t slot = redis::KeySlot(kept);
  int from = cluster->PrimaryOf(slot);
  ASSERT_NE(from, 0);
  ASSERT_EQ(cluster->Command(from, {"SET", kept, "v1"}).str, "OK");
  int to = 0;
  for (int port : cluster->NodesWithRole(RedisCluster::Role::kPrimary)) {
    if (port != from && to == 0) to = port;
  }
  ASSERT_NE(to, 0);

  ASSERT_TRUE(cluster->BeginSlotMigration(slot, to)) << cluster->last_error();
  // Mid-move the source still answers for the key it has, and sends ASK for one it does not.
  EXPECT_EQ(cluster->Command(from, {"GET", kept}).str, "v1");
  Value ask = cluster->Command(from, {"SET", added, "c1"});
  ASSERT_EQ(ask.type, Value::Type::kError) << ask.str;
  std::optional<redis::Redirect> redirect = redis::ParseRedirect(ask.str);
  ASSERT_TRUE(redirect.has_value()) << ask.str;
  EXPECT_EQ(redirect->kind, redis::Redirect::Kind::kAsk);
  EXPECT_EQ(redirect->slot, slot);
  EXPECT_EQ(redirect->endpoint.port, to);
  // The target refuses the slot without ASKING (MOVED back to the owner); the ASKING step is
  // outside this test's one-command connections.
  Value without_asking = cluster->Command(to, {"GET", kept});
  std::optional<redis::Redirect> back = redis::ParseRedirect(without_asking.str);
  ASSERT_TRUE(back.has_value()) << without_asking.str;
  EXPECT_EQ(back->kind, redis::Redirect::Kind::kMoved);
  EXPECT_EQ(back->endpoint.port, from);

  ASSERT_TRUE(cluster->FinishSlotMigration(slot, to)) << cluster->last_error();
  EXPECT_EQ(cluster->PrimaryOf(slot), to);
  EXPECT_EQ(cluster->Command(to, {"GET", kept}).str, "v1");  // the key moved with the slot
  Value moved = cluster->Command(from, {"GET", kept});
  std::optional<redis::Redirect> after = redis::ParseRedirect(moved.str);
  ASSERT_TRUE(after.has_value()) << moved.str;
  EXPECT_EQ(after->kind, redis::Redirect::Kind::kMoved);
  EXPECT_EQ(after->endpoint.port, to);
  // Every node's map, read with the parser, has the slot on its new primary.
  for (int port : cluster->ports()) {
    absl::StatusOr<redis::SlotMap> map = cluster->SlotMapOf(port);
    ASSERT_TRUE(map.ok()) << map.status();
    EXPECT_EQ(map->ShardForSlot(slot)->primary.port, to) << "node " << port;
    EXPECT_EQ(map->assigned_slots(), redis::kClusterSlots);
  }
}

TEST_F(RedisClusterFixtureTest, KillingAPrimaryPromotesItsReplica) {
  std::unique_ptr<RedisCluster> cluster = Own();
  ASSERT_TRUE(cluster->ready()) << cluster->last_error();
  const std::string key = "{u:42}:stream";
  const uint16_t slot = redis::KeySlot(key);
  int old_primary = cluster->PrimaryOf(slot);
  ASSERT_NE(old_primary, 0);
  // The replica that should take over.
  absl::StatusOr<redis::SlotMap> map = cluster->SlotMapOf(old_primary);
  ASSERT_TRUE(map.ok()) << map.status();
  ASSERT_EQ(map->ShardForSlot(slot)->replicas.size(), 1u);
  int replica = map->ShardForSlot(slot)->replicas[0].port;
  // A write the replica has acknowledged survives the failover.
  ASSERT_EQ(cluster->Command(old_primary, {"SET", key, "before"}).str, "OK");
  Value acked = cluster->Command(old_primary, {"WAIT", "1", "5000"});
  ASSERT_EQ(acked.integer, 1) << acked.str;

  auto killed_at = Clock::now();
  ASSERT_EQ(cluster->KillPrimaryOf(slot), old_primary);
  EXPECT_FALSE(cluster->running(old_primary));
  EXPECT_EQ(cluster->RoleOf(old_primary), RedisCluster::Role::kDown);
  int new_primary = cluster->WaitForFailover(slot, std::chrono::seconds(30));
  auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - killed_at);
  std::cout << "failover took " << took.count() << " ms (node timeout 2000 ms)" << std::endl;
  ASSERT_NE(new_primary, 0) << cluster->last_error();
  EXPECT_EQ(new_primary, replica);
  EXPECT_EQ(cluster->RoleOf(new_primary), RedisCluster::Role::kPrimary);
  EXPECT_EQ(cluster->Command(new_primary, {"GET", key}).str, "before");
  // The other primaries now redirect the slot to the promoted replica.
  for (int port : cluster->NodesWithRole(RedisCluster::Role::kPrimary)) {
    if (port == new_primary) continue;
    std::optional<redis::Redirect> redirect =
        redis::ParseRedirect(cluster->Command(port, {"GET", key}).str);
    ASSERT_TRUE(redirect.has_value());
    EXPECT_EQ(redirect->endpoint.port, new_primary);
  }
}

}  // namespace
}  // namespace push::testing
