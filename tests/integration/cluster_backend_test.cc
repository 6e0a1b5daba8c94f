// pushd on a real Redis Cluster (CONTRACT §7, issue 16): three primaries with a replica each,
// started by the tests on loopback, and real pushd processes with --redis_cluster. Routing
// across nodes and shards, ListClients pages, a slot that migrates under load, and the SIGKILL
// of a primary under load with --redis_wait_replicas=1.

#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/redis/cluster_slots.h"
#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/redis_cluster.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

class ClusterBackendTest : public RedisClusterSuite {
 protected:
  std::unique_ptr<PushdProcess> Node(RedisCluster& cluster, const std::string& node_id,
                                     std::vector<std::string> extra = {},
                                     PushdOptions options = {}) {
    std::vector<std::string> args = {"--redis_cluster=" + cluster.seeds(),
                                     "--node_id=" + node_id};
    args.insert(args.end(), extra.begin(), extra.end());
    auto node = std::make_unique<PushdProcess>(args, options);
    EXPECT_TRUE(node->started());
    return node;
  }

  // A message frame's seq and data; 0 (and a test failure) for anything else.
  static uint64_t NextSeq(WsClient& ws, std::string* data = nullptr,
                          milliseconds timeout = milliseconds(10000)) {
    WsEvent e = ws.Read(timeout);
    if (e.kind != WsEvent::kText) {
      ADD_FAILURE() << "wanted a message, got kind " << e.kind << " " << e.data << " code "
                    << e.close_code;
      return 0;
    }
    json::value frame = json::parse(e.data);
    EXPECT_EQ(frame.at("type"), "message") << e.data;
    if (frame.at("type") != "message") return 0;
    if (data) *data = json::serialize(frame.at("data"));
    return frame.at("seq").to_number<uint64_t>();
  }

  static void ExpectQuiet(WsClient& ws, milliseconds for_time = milliseconds(300)) {
    WsEvent e = ws.Read(for_time);
    EXPECT_EQ(e.kind, WsEvent::kTimeout) << "unexpected frame: " << e.data;
  }

  static bool WaitListed(const PushdProcess& node, const std::string& user, uint64_t want,
                         milliseconds timeout = milliseconds(10000)) {
    auto stub = node.Stub();
    return WaitFor([&] { return DoList(*stub, user).total() == want; }, timeout);
  }

  // `per_shard` users served by each primary of the cluster (by their slot).
  static std::vector<std::string> UsersOnEveryShard(RedisCluster& cluster, int per_shard) {
    std::map<int, int> count;
    std::vector<std::string> users;
    for (int i = 0; i < 10000 && users.size() < static_cast<size_t>(3 * per_shard); ++i) {
      std::string user = absl::StrCat("user-", i);
      int primary = cluster.PrimaryOf(redis::KeySlot(user));
      if (primary == 0 || count[primary] >= per_shard) continue;
      ++count[primary];
      users.push_back(user);
    }
    EXPECT_EQ(count.size(), 3u) << "users on every primary";
    return users;
  }
};

TEST_F(ClusterBackendTest, PushesToUsersOnEveryShardReachAnotherNodeOnceAndInOrder) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready());
  auto a = Node(cluster, "node-a");
  auto b = Node(cluster, "node-b");
  std::vector<std::string> users = UsersOnEveryShard(cluster, 3);
  std::vector<std::unique_ptr<WsClient>> clients;
  for (const std::string& user : users) {
    clients.push_back(ConnectUser(*b, user));
    ASSERT_TRUE(clients.back()) << user;
  }
  for (const std::string& user : users) ASSERT_TRUE(WaitListed(*a, user, 1)) << user;
  auto stub = a->Stub();
  constexpr int kMessages = 10;
  for (int i = 1; i <= kMessages; ++i) {
    for (const std::string& user : users) {
      v1::PushResponse res;
      grpc::Status s = DoPush(*stub, user, absl::StrCat("{\"n\":", i, "}"), &res);
      ASSERT_TRUE(s.ok()) << user << ": " << s.error_message();
      EXPECT_EQ(res.seq(), static_cast<uint64_t>(i));
      EXPECT_EQ(res.delivered(), 1u) << user;
    }
  }
  for (size_t u = 0; u < users.size(); ++u) {
    for (int i = 1; i <= kMessages; ++i) {
      std::string data;
      ASSERT_EQ(NextSeq(*clients[u], &data), static_cast<uint64_t>(i)) << users[u];
      EXPECT_EQ(data, absl::StrCat("{\"n\":", i, "}"));
    }
    ExpectQuiet(*clients[u], milliseconds(50));
  }
}

}  // namespace
}  // namespace push::testing
