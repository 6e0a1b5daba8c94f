#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/redis/cluster_slots.h"
#include "common/redis/redis_client.h"
#include "gtest/gtest.h"
#include "tests/testing/ports.h"
#include "tests/testing/temp_files.h"

namespace push::testing {

// A real Redis Cluster on 127.0.0.1 for the tests (CONTRACT §7): `primaries` redis-server
// child processes with `replicas_per_primary` replicas each, joined by `redis-cli --cluster
// create` and waited for until every node agrees on who serves every slot. Each node has its
// own directory (nodes.conf, redis.log) under one temporary directory; nothing is persisted
// (no RDB, no AOF: a killed primary's data survives only on its replica, as in production).
//
// Every process it starts is killed and reaped in the destructor. The servers are also killed
// by the kernel if the thread that created the cluster dies (PR_SET_PDEATHSIG), so a crashed
// or timed-out test leaves no cluster behind; create it on a thread that outlives it (the test
// body or SetUpTestSuite, not a short-lived helper thread).
//
// Waits are bounded; a helper that gives up returns false/0 and says why in last_error().
class RedisCluster {
 public:
  struct Options {
    int primaries = 3;
    int replicas_per_primary = 1;
    // cluster-node-timeout: how long a primary must be unreachable before its replica takes
    // over. Small, so a failover test takes seconds; a failover takes about this plus 1-2 s.
    int node_timeout_ms = 2000;
    // requirepass and masterauth on every node (empty: none); Command() and the creation AUTH.
    std::string password;
    // How long the start may take (launch, create, every node agreeing).
    std::chrono::milliseconds start_timeout = std::chrono::seconds(30);
  };
  enum class Role { kPrimary, kReplica, kDown };

  RedisCluster();  // 3 primaries, 1 replica each
  explicit RedisCluster(Options options);
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // Whether redis-server and redis-cli are installed.
  static bool Available();

  // Up and agreed; false (with an ADD_FAILURE saying why) if the start failed.
  bool ready() const { return ready_; }
  // From the first launch to every node agreeing.
  std::chrono::milliseconds start_time() const { return start_time_; }
  const std::string& last_error() const { return last_error_; }

  // "127.0.0.1:P1,127.0.0.1:P2,...": every node, as --redis_cluster takes it.
  std::string seeds() const;
  // Every node's port in launch order (killed ones included).
  std::vector<int> ports() const;
  bool running(int port) const;

  // What the node says of itself (ROLE); kDown for a killed or unreachable node.
  Role RoleOf(int port);
  // Ports of the running nodes in `role`.
  std::vector<int> NodesWithRole(Role role);
  // The port of the primary serving `slot` as the first running node that answers CLUSTER
  // SLOTS sees it, or 0.
  int PrimaryOf(uint16_t slot);
  // The slot map as `port` reports it (its CLUSTER SLOTS, parsed).
  absl::StatusOr<redis::SlotMap> SlotMapOf(int port);

  // SIGKILL (no goodbye, like a crashed machine), then reaped.
  void Kill(int port);
  // Kills the primary serving `slot`; its port, or 0 if there was none.
  int KillPrimaryOf(uint16_t slot);
  // After a primary was killed: waits until a replica serves `slot` in its place and every
  // running node says cluster_state:ok and agrees that running primaries serve every slot.
  // The new primary's port, or 0 after `timeout`.
  int WaitForFailover(uint16_t slot, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Every running node says cluster_state:ok and agrees that running primaries serve every
  // slot (and, with `all_replicas`, that each primary has all its replicas, in sync).
  bool WaitAgreed(std::chrono::milliseconds timeout, bool all_replicas = false);

  // Moves `slot` (its keys and its ownership) from its primary to the primary on `to_port`,
  // then waits until every running node agrees. Done with the CLUSTER SETSLOT / MIGRATE steps
  // of the cluster specification rather than `redis-cli --cluster reshard`, which picks the
  // slots to move itself and cannot be told to move one named slot (the slot of the user a
  // test is watching). The two halves are offered apart so a test can hold a slot mid-move:
  //   BeginSlotMigration: the target is IMPORTING, the source MIGRATING; the source still
  //     answers for the keys it has and sends ASK for the others;
  //   FinishSlotMigration: moves the remaining keys, assigns the slot to the target on every
  //     primary (target first, then source), and waits for agreement.
  bool MigrateSlot(uint16_t slot, int to_port);
  bool BeginSlotMigration(uint16_t slot, int to_port);
  bool FinishSlotMigration(uint16_t slot, int to_port);

  // One command sent to the node on `port` over a fresh connection. An unreachable node gives
  // an error Value ("ERR cannot connect ..."), as does a command that timed out.
  redis::Value Command(int port, const std::vector<std::string>& argv);
  // A field of the node's CLUSTER INFO ("cluster_state" → "ok"), or "" if it does not answer.
  std::string ClusterInfoField(int port, const std::string& field);

 private:
  struct Node {
    int port = 0;
    pid_t pid = -1;
    std::string dir;
  };
  // Every node's port and bus port, held against the other test processes for the cluster's life.
  std::vector<PortLease> leases_;
  struct Migration {
    int from_port = 0;
    std::string from_id;
    std::string to_id;
  };

  bool Start();
  bool LaunchNode(Node* node, int index);
  bool CreateCluster();
  // One look at every running node: true if they agree as WaitAgreed describes; `owners`, if
  // given, gets the port serving each slot.
  bool Agreed(bool all_replicas, std::vector<int>* owners);
  std::optional<Migration> PrepareMigration(uint16_t slot, int to_port);
  Node* Find(int port);
  bool Fail(std::string why);
  void KillAll();

  Options options_;
  TempDir dir_;
  std::vector<Node> nodes_;
  bool ready_ = false;
  std::chrono::milliseconds start_time_{0};
  std::string last_error_;
};

// A test suite on a real cluster. SetUp fails (it does not skip) when redis-server or redis-cli is
// missing: scripts/setup.sh installs them. Shared() is one cluster for the tests that neither
// kill nor reshard (ctest runs each test in its own process, so one per test there; one for the
// suite when the binary runs them together); the others start their own.
class RedisClusterSuite : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RedisCluster::Available()) << "redis-server or redis-cli is not installed";
  }
  static RedisCluster& Shared() {
    if (!shared_) shared_ = std::make_unique<RedisCluster>();
    return *shared_;
  }
  static void TearDownTestSuite() { shared_.reset(); }

 private:
  static inline std::unique_ptr<RedisCluster> shared_;
};

}  // namespace push::testing
