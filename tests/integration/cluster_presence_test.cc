// Presence on a real Redis Cluster (CONTRACT §2, §5, §7; issue 16), as a caller of the gRPC API
// and a WebSocket client see it: ListClients pages through thousands of connections on two pushd
// nodes, with and without a user filter; DeleteClient on one node closes connections on another;
// a node that dies (SIGKILL) or stops (SIGTERM) leaves ListClients and stops counting in Push's
// `delivered`; and --redis_cluster aimed at something that is not a cluster is a bad flag value.
// Three primaries with a replica each, real pushd processes, loopback only.

#include <signal.h>
#include <sys/resource.h>

#include <boost/json.hpp>
#include <cctype>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/redis/cluster_slots.h"
#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/redis_cluster.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// (user_id, connection_id) → the node_id ListClients must show for it.
using Expected = std::map<std::pair<std::string, std::string>, std::string>;

class ClusterPresenceTest : public RedisClusterSuite {
 protected:
  std::unique_ptr<PushdProcess> Node(RedisCluster& cluster, const std::string& node_id,
                                     std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--redis_cluster=" + cluster.seeds(), "--node_id=" + node_id};
    args.insert(args.end(), extra.begin(), extra.end());
    auto node = std::make_unique<PushdProcess>(args);
    EXPECT_TRUE(node->started()) << node_id;
    return node;
  }

  // Opens /ws?user_id=<user> on `port` with a RawClient (one descriptor, no thread, no Beast) and
  // reads the welcome frame; returns its connection_id, or "" (and a test failure).
  static std::string OpenRaw(int port, const std::string& user, std::unique_ptr<RawClient>* out) {
    auto raw = RawClient::Connect(port);
    if (!raw) {
      ADD_FAILURE() << "cannot connect to " << port << " for " << user;
      return "";
    }
    int status = raw->Upgrade("/ws?user_id=" + user);
    if (status != 101) {
      ADD_FAILURE() << "upgrade for " << user << " answered " << status;
      return "";
    }
    std::optional<RawClient::Frame> frame = raw->ReadFrame();
    if (!frame || frame->opcode != 0x1) {
      ADD_FAILURE() << "no welcome frame for " << user;
      return "";
    }
    json::value welcome = json::parse(frame->payload);
    if (welcome.at("type") != "welcome" || welcome.at("user_id") != user.c_str()) {
      ADD_FAILURE() << "not the welcome for " << user << ": " << frame->payload;
      return "";
    }
    *out = std::move(raw);
    return std::string(welcome.at("connection_id").as_string());
  }

  // A WebSocket client of `user` on `node`; its connection_id from the welcome goes to *id.
  static std::unique_ptr<WsClient> Open(const PushdProcess& node, const std::string& user,
                                        std::string* id) {
    json::value welcome;
    auto ws = ConnectUser(node, user, "", &welcome);
    if (!ws) {
      ADD_FAILURE() << "cannot connect " << user;
      return nullptr;
    }
    *id = std::string(welcome.at("connection_id").as_string());
    return ws;
  }

  // Registration reaches Redis asynchronously after the welcome: wait until ListClients on
  // `node` shows `want` connections of `user` ("" = everybody).
  static bool WaitTotal(const PushdProcess& node, const std::string& user, uint64_t want,
                        milliseconds timeout = milliseconds(10000)) {
    auto stub = node.Stub();
    return WaitFor([&] { return DoList(*stub, user).total() == want; }, timeout);
  }

  // Polls `condition` every `interval` until it holds or `timeout` passes, for conditions that
  // cost something each time (a Push appends a message).
  static bool PollEvery(milliseconds interval, milliseconds timeout,
                        const std::function<bool()>& condition) {
    auto deadline = steady_clock::now() + timeout;
    while (steady_clock::now() < deadline) {
      if (condition()) return true;
      std::this_thread::sleep_for(interval);
    }
    return condition();
  }

  // Push's `delivered` for one more message to `user`; -1 when the push failed.
  static int Delivered(v1::PushService::Stub& stub, const std::string& user) {
    v1::PushResponse res;
    grpc::Status s = DoPush(stub, user, R"({"probe":true})", &res);
    EXPECT_TRUE(s.ok()) << user << ": " << s.error_message();
    return s.ok() ? static_cast<int>(res.delivered()) : -1;
  }

  // Every page of ListClients (filter `user`, `page_size`), following next_page_token; more than
  // `max_pages` pages fail the test (a token that never ends).
  static std::vector<v1::ListClientsResponse> AllPages(v1::PushService::Stub& stub,
                                                       const std::string& user, uint32_t page_size,
                                                       size_t max_pages) {
    std::vector<v1::ListClientsResponse> pages;
    std::string token;
    do {
      grpc::Status status;
      pages.push_back(DoList(stub, user, page_size, token, &status));
      if (!status.ok()) {
        ADD_FAILURE() << "page " << pages.size() << ": " << status.error_message();
        break;
      }
      token = pages.back().next_page_token();
      if (!token.empty() && pages.size() >= max_pages) {
        ADD_FAILURE() << "still a next_page_token after " << pages.size() << " pages";
        break;
      }
    } while (!token.empty());
    return pages;
  }

  // The pages hold exactly `want`, in strictly increasing (user_id, connection_id) order across
  // pages, each with its node; `total` is want.size() on every page; every page but the last is
  // full and has a next_page_token, the last has none.
  static void ExpectPagesCover(const std::vector<v1::ListClientsResponse>& pages,
                               const Expected& want, uint32_t page_size) {
    const size_t want_pages = (want.size() + page_size - 1) / page_size;
    EXPECT_EQ(pages.size(), want_pages) << "page_size " << page_size;
    std::optional<std::pair<std::string, std::string>> previous;
    std::set<std::pair<std::string, std::string>> seen;
    size_t wrong_node = 0, unknown = 0, out_of_order = 0;
    for (size_t p = 0; p < pages.size(); ++p) {
      const v1::ListClientsResponse& page = pages[p];
      const bool last = p + 1 == pages.size();
      EXPECT_EQ(page.total(), want.size()) << "page " << p << " of size " << page_size;
      if (last) {
        EXPECT_TRUE(page.next_page_token().empty()) << "last page " << p;
        EXPECT_GE(page.clients_size(), 1) << "empty last page " << p;
        EXPECT_LE(page.clients_size(), static_cast<int>(page_size)) << "last page " << p;
      } else {
        EXPECT_FALSE(page.next_page_token().empty()) << "page " << p;
        EXPECT_EQ(page.clients_size(), static_cast<int>(page_size)) << "page " << p;
      }
      for (const v1::Client& c : page.clients()) {
        std::pair<std::string, std::string> key{c.user_id(), c.connection_id()};
        if (previous && !(*previous < key)) {
          if (++out_of_order <= 5) {
            ADD_FAILURE() << "page " << p << ": (" << key.first << ", " << key.second << ") after ("
                          << previous->first << ", " << previous->second << ")";
          }
        }
        previous = key;
        seen.insert(key);
        auto it = want.find(key);
        if (it == want.end()) {
          if (++unknown <= 5) {
            ADD_FAILURE() << "page " << p << ": unexpected (" << key.first << ", " << key.second
                          << ") on " << c.node_id();
          }
        } else if (c.node_id() != it->second) {
          if (++wrong_node <= 5) {
            ADD_FAILURE() << key.first << "/" << key.second << " listed on '" << c.node_id()
                          << "', its welcome came from " << it->second;
          }
        }
      }
    }
    EXPECT_EQ(out_of_order, 0u) << "page_size " << page_size;
    EXPECT_EQ(unknown, 0u) << "page_size " << page_size;
    EXPECT_EQ(wrong_node, 0u) << "page_size " << page_size;
    size_t missing = 0;
    for (const auto& [key, node] : want) {
      if (seen.count(key)) continue;
      if (++missing <= 5) {
        ADD_FAILURE() << "(" << key.first << ", " << key.second << ") on " << node
                      << " is on no page (page_size " << page_size << ")";
      }
    }
    EXPECT_EQ(missing, 0u) << "page_size " << page_size;
  }

  // Users whose keys live on `per_shard` different slots of each primary (by the map one node
  // reports), named <prefix>0, <prefix>1, ...
  static std::vector<std::string> UsersOnEveryShard(RedisCluster& cluster,
                                                    const std::string& prefix, int per_shard) {
    absl::StatusOr<redis::SlotMap> map = cluster.SlotMapOf(cluster.ports().front());
    EXPECT_TRUE(map.ok()) << map.status();
    if (!map.ok()) return {};
    std::map<int, int> count;
    std::vector<std::string> users;
    const size_t want = map->shards().size() * static_cast<size_t>(per_shard);
    for (int i = 0; i < 10000 && users.size() < want; ++i) {
      std::string user = absl::StrCat(prefix, i);
      int shard = map->ShardIndex(redis::KeySlot(user));
      if (shard < 0 || count[shard] >= per_shard) continue;
      ++count[shard];
      users.push_back(user);
    }
    EXPECT_EQ(users.size(), want) << "users on every shard";
    return users;
  }

  static std::string Describe(const v1::ListClientsResponse& list) {
    std::string out = absl::StrCat("total ", list.total(), ":");
    for (const auto& c : list.clients()) {
      absl::StrAppend(&out, " ", c.user_id(), "/", c.connection_id(), "@", c.node_id());
    }
    return out;
  }
};

// The open-files soft limit raised to the hard one (as scripts/run-tests.sh does); false when
// even that leaves fewer than `need` descriptors.
bool EnoughOpenFiles(rlim_t need) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= need;
}

// 2,000 WebSockets, 1,000 on each of two nodes, of ~2,000 users spread over every shard (some
// with connections on both nodes, some whose ids are prefixes of others'): every page size walks
// through all of them once, in order, with the right node and the cluster-wide total.
TEST_F(ClusterPresenceTest, ListClientsPagesThrough2000ConnectionsOnTwoNodesInOrder) {
  constexpr int kPerNode = 1000;
  // Both halves' clients plus gRPC channels, Redis links and the test binary's own.
  ASSERT_TRUE(EnoughOpenFiles(2 * kPerNode + 512))
      << "the open-files hard limit is too low for " << 2 * kPerNode << " clients";
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  // Raw clients do not answer pings: a long interval keeps them from being dropped meanwhile.
  auto a = Node(cluster, "node-a", {"--ping_interval=10m"});
  auto b = Node(cluster, "node-b", {"--ping_interval=10m"});
  ASSERT_TRUE(a->started() && b->started());

  // Node A: "u1".."u990" (unpadded, so "u1" < "u10" < "u100" share prefixes), node B:
  // "u1001".."u1990"; five users "Both.0".."Both.4" with two connections on each node.
  auto user_of = [](int node, int j) {
    if (j < kPerNode - 10) return absl::StrCat("u", node * kPerNode + j + 1);
    return absl::StrCat("Both.", (j - (kPerNode - 10)) % 5);
  };
  {
    absl::StatusOr<redis::SlotMap> map = cluster.SlotMapOf(cluster.ports().front());
    ASSERT_TRUE(map.ok()) << map.status();
    std::map<int, int> per_shard;
    for (int node = 0; node < 2; ++node) {
      for (int j = 0; j < kPerNode; ++j)
        ++per_shard[map->ShardIndex(redis::KeySlot(user_of(node, j)))];
    }
    ASSERT_EQ(per_shard.size(), map->shards().size());
    for (const auto& [shard, n] : per_shard) EXPECT_GT(n, 400) << "users on shard " << shard;
  }

  struct Half {
    std::vector<std::unique_ptr<RawClient>> clients;
    Expected opened;
  };
  Half halves[2];
  auto start = steady_clock::now();
  auto open_half = [&](int node) {
    const PushdProcess& pushd = node == 0 ? *a : *b;
    const std::string node_id = node == 0 ? "node-a" : "node-b";
    Half& half = halves[node];
    for (int j = 0; j < kPerNode; ++j) {
      std::unique_ptr<RawClient> raw;
      std::string user = user_of(node, j);
      std::string id = OpenRaw(pushd.ws_port(), user, &raw);
      if (id.empty()) return;
      half.clients.push_back(std::move(raw));
      half.opened[{user, id}] = node_id;
    }
  };
  std::thread open_b(open_half, 1);
  open_half(0);
  open_b.join();
  ASSERT_EQ(halves[0].clients.size(), static_cast<size_t>(kPerNode));
  ASSERT_EQ(halves[1].clients.size(), static_cast<size_t>(kPerNode));
  Expected want = halves[0].opened;
  want.insert(halves[1].opened.begin(), halves[1].opened.end());
  ASSERT_EQ(want.size(), 2u * kPerNode) << "a connection_id given twice";
  std::cout << "opened " << want.size() << " connections in " << MillisSince(start) << " ms\n";

  auto stub_a = a->Stub();
  auto stub_b = b->Stub();
  ASSERT_TRUE(
      WaitFor([&] { return DoList(*stub_a, "", 1).total() == want.size(); }, milliseconds(20000)))
      << "registered: " << DoList(*stub_a, "", 1).total();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub_b, "", 1).total() == want.size(); }));

  for (auto [stub, page_size] : {std::pair{stub_a.get(), 100u}, std::pair{stub_b.get(), 7u},
                                 std::pair{stub_a.get(), 1000u}}) {
    auto pass = steady_clock::now();
    std::vector<v1::ListClientsResponse> pages =
        AllPages(*stub, "", page_size, want.size() / page_size + 5);
    std::cout << "page_size " << page_size << ": " << pages.size() << " pages in "
              << MillisSince(pass) << " ms\n";
    ExpectPagesCover(pages, want, page_size);
  }
  // A user on both nodes, filtered: its four connections, two per node.
  v1::ListClientsResponse both = DoList(*stub_b, "Both.3");
  EXPECT_EQ(both.total(), 4u) << Describe(both);
  std::multiset<std::string> nodes;
  for (const auto& c : both.clients()) nodes.insert(c.node_id());
  EXPECT_EQ(nodes, (std::multiset<std::string>{"node-a", "node-a", "node-b", "node-b"}));
}

// A filter on one user: its connections on both nodes, paged, and nobody else's, not even users
// whose ids extend it or are a prefix of it.
TEST_F(ClusterPresenceTest, ListClientsFilteredByUserPagesThroughItsConnectionsOnBothNodes) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  auto a = Node(cluster, "node-a");
  auto b = Node(cluster, "node-b");
  ASSERT_TRUE(a->started() && b->started());
  const std::string user = "fil.ter";
  Expected want;
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 5; ++i) {
    const PushdProcess& node = i < 3 ? *a : *b;
    std::string id;
    clients.push_back(Open(node, user, &id));
    ASSERT_TRUE(clients.back());
    want[{user, id}] = i < 3 ? "node-a" : "node-b";
  }
  // Neighbours in the byte order of the index: a prefix, extensions, the next id up.
  const std::vector<std::string> others = {"fil.te", "fil.ter0", "fil.ter-x", "fil.tes",
                                           "fil.ter.a"};
  std::map<std::string, std::string> other_ids;
  for (size_t i = 0; i < others.size(); ++i) {
    std::string id;
    clients.push_back(Open(i % 2 ? *a : *b, others[i], &id));
    ASSERT_TRUE(clients.back());
    other_ids[others[i]] = id;
  }
  ASSERT_TRUE(WaitTotal(*b, "", want.size() + others.size()))
      << Describe(DoList(*b->Stub(), "", 100));

  auto stub_a = a->Stub();
  auto stub_b = b->Stub();
  v1::ListClientsResponse one_page = DoList(*stub_a, user);
  EXPECT_EQ(one_page.total(), 5u) << Describe(one_page);
  EXPECT_TRUE(one_page.next_page_token().empty());
  ExpectPagesCover({one_page}, want, 100);
  for (v1::PushService::Stub* stub : {stub_a.get(), stub_b.get()}) {
    std::vector<v1::ListClientsResponse> pages = AllPages(*stub, user, 2, 5);
    ASSERT_EQ(pages.size(), 3u);
    EXPECT_EQ(pages[0].clients_size(), 2);
    EXPECT_EQ(pages[1].clients_size(), 2);
    EXPECT_EQ(pages[2].clients_size(), 1);
    ExpectPagesCover(pages, want, 2);
  }
  // Each neighbour's filter finds it alone.
  for (const auto& [other, id] : other_ids) {
    v1::ListClientsResponse list = DoList(*stub_a, other);
    EXPECT_EQ(list.total(), 1u) << other << ": " << Describe(list);
    ASSERT_EQ(list.clients_size(), 1) << other;
    EXPECT_EQ(list.clients(0).user_id(), other);
    EXPECT_EQ(list.clients(0).connection_id(), id);
  }
}

// DeleteClient on node A, for connections that live on node B: one by connection_id, then all of
// the user's; each closed with 1000 and the reason, `closed` counting them, the others untouched,
// and gone from ListClients afterwards.
TEST_F(ClusterPresenceTest, DeleteClientOnOneNodeClosesConnectionsOnAnother) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  auto a = Node(cluster, "node-a");
  auto b = Node(cluster, "node-b");
  ASSERT_TRUE(a->started() && b->started());
  const std::string user = "dora";
  std::string b1_id, b2_id, a1_id, other_id;
  auto b1 = Open(*b, user, &b1_id);
  auto b2 = Open(*b, user, &b2_id);
  auto a1 = Open(*a, user, &a1_id);
  auto other = Open(*b, "dora2", &other_id);  // another user on the same node
  ASSERT_TRUE(b1 && b2 && a1 && other);
  ASSERT_TRUE(WaitTotal(*a, "", 4)) << Describe(DoList(*a->Stub()));
  auto stub = a->Stub();

  // An id that is none of the user's closes nothing.
  EXPECT_EQ(DoDelete(*stub, user, nullptr, other_id).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::DeleteClientResponse res;
  grpc::Status s = DoDelete(*stub, user, &res, b1_id, false, "moved to another tab");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(res.closed(), 1u);
  WsEvent e = b1->Read(seconds(10));
  ASSERT_EQ(e.kind, WsEvent::kClosed) << e.kind << " " << e.data;
  EXPECT_EQ(e.close_code, 1000);
  EXPECT_EQ(e.close_reason, "moved to another tab");
  // Only that one: the user's other connections and the other user stay open (a message to
  // each arrives; a read that times out would end the client's connection).
  EXPECT_EQ(Delivered(*stub, user), 2);
  EXPECT_EQ(Delivered(*stub, "dora2"), 1);
  for (WsClient* ws : {b2.get(), a1.get(), other.get()}) {
    WsEvent message = ws->Read(seconds(10));
    EXPECT_EQ(message.kind, WsEvent::kText) << message.kind << " " << message.close_code;
  }
  ASSERT_TRUE(WaitTotal(*a, user, 2)) << Describe(DoList(*stub, user));
  {
    v1::ListClientsResponse list = DoList(*stub, user);
    std::set<std::string> ids;
    for (const auto& c : list.clients()) ids.insert(c.connection_id());
    EXPECT_EQ(ids, (std::set<std::string>{b2_id, a1_id})) << Describe(list);
  }
  // The deleted id again: nothing to close.
  EXPECT_EQ(DoDelete(*stub, user, nullptr, b1_id).error_code(), grpc::StatusCode::NOT_FOUND);

  // All of the user's, one on each node.
  res.Clear();
  s = DoDelete(*stub, user, &res, "", false, "account closed");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(res.closed(), 2u);
  for (WsClient* ws : {b2.get(), a1.get()}) {
    WsEvent closed = ws->Read(seconds(10));
    ASSERT_EQ(closed.kind, WsEvent::kClosed) << closed.kind << " " << closed.data;
    EXPECT_EQ(closed.close_code, 1000);
    EXPECT_EQ(closed.close_reason, "account closed");
  }
  EXPECT_TRUE(WaitTotal(*a, user, 0)) << Describe(DoList(*stub, user));
  EXPECT_TRUE(WaitTotal(*b, "", 1)) << Describe(DoList(*b->Stub()));
  v1::ListClientsResponse rest = DoList(*b->Stub());
  ASSERT_EQ(rest.clients_size(), 1) << Describe(rest);
  EXPECT_EQ(rest.clients(0).connection_id(), other_id);

  // Nobody left, and a user who never connected: NOT_FOUND.
  EXPECT_EQ(DoDelete(*stub, user).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(DoDelete(*stub, "never-connected").error_code(), grpc::StatusCode::NOT_FOUND);

  // The other user, by id through node A without a reason: 1000 "deleted".
  res.Clear();
  s = DoDelete(*stub, "dora2", &res, other_id);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(res.closed(), 1u);
  e = other->Read(seconds(10));
  ASSERT_EQ(e.kind, WsEvent::kClosed) << e.kind << " " << e.data;
  EXPECT_EQ(e.close_code, 1000);
  EXPECT_EQ(e.close_reason, "deleted");
  EXPECT_TRUE(WaitTotal(*a, "", 0)) << Describe(DoList(*stub));
}

// A node killed without goodbye: its connections leave ListClients (as the other node sees it)
// within 30 s, and stop counting in Push's `delivered`, both for users it alone served and for a
// user with a connection on the surviving node too.
TEST_F(ClusterPresenceTest, ANodeKilledWithoutGoodbyeLeavesListClientsAndDeliveredWithin30s) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  // The clients are not read while the test waits: no pings, so none is dropped for missing
  // pongs meanwhile (which would change `delivered` for another reason).
  auto a = Node(cluster, "node-a", {"--ping_interval=10m"});
  auto b = Node(cluster, "node-b", {"--ping_interval=10m"});
  ASSERT_TRUE(a->started() && b->started());
  std::vector<std::string> only_b = UsersOnEveryShard(cluster, "lost-", 2);
  ASSERT_FALSE(only_b.empty());
  std::vector<std::unique_ptr<WsClient>> clients;
  std::string id, survivor_id;
  for (const std::string& user : only_b) {
    clients.push_back(Open(*b, user, &id));
    ASSERT_TRUE(clients.back());
  }
  clients.push_back(Open(*b, "kept", &id));
  ASSERT_TRUE(clients.back());
  clients.push_back(Open(*a, "kept", &survivor_id));
  ASSERT_TRUE(clients.back());
  const uint64_t all = only_b.size() + 2;
  ASSERT_TRUE(WaitTotal(*a, "", all)) << Describe(DoList(*a->Stub()));
  auto stub = a->Stub();
  // Before: every connection counts.
  for (const std::string& user : only_b) EXPECT_EQ(Delivered(*stub, user), 1) << user;
  EXPECT_EQ(Delivered(*stub, "kept"), 2);

  b->Signal(SIGKILL);
  ASSERT_GE(b->Wait(5000), 0);
  auto killed = steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub).total() == 1; }, seconds(30)))
      << "after 30 s: " << Describe(DoList(*stub));
  std::cout << "left ListClients after " << MillisSince(killed) << " ms\n";
  v1::ListClientsResponse list = DoList(*stub);
  ASSERT_EQ(list.clients_size(), 1) << Describe(list);
  EXPECT_EQ(list.clients(0).connection_id(), survivor_id);
  EXPECT_EQ(list.clients(0).node_id(), "node-a");

  // Push's count: within the same 30 s of the kill.
  auto left = seconds(30) - (steady_clock::now() - killed);
  EXPECT_TRUE(PollEvery(milliseconds(250), std::chrono::duration_cast<milliseconds>(left),
                        [&] { return Delivered(*stub, "kept") == 1; }))
      << "the killed node's connection of 'kept' still counts " << MillisSince(killed)
      << " ms after the kill";
  std::cout << "left delivered after " << MillisSince(killed) << " ms\n";
  for (const std::string& user : only_b) EXPECT_EQ(Delivered(*stub, user), 0) << user;
  // And DeleteClient finds nothing of them to close.
  for (const std::string& user : only_b) {
    EXPECT_EQ(DoDelete(*stub, user).error_code(), grpc::StatusCode::NOT_FOUND) << user;
  }
}

// A node stopped with SIGTERM says goodbye: its connections leave ListClients and `delivered` as
// soon as it has exited.
TEST_F(ClusterPresenceTest, AGracefullyStoppedNodeLeavesListClientsAndDeliveredAtOnce) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  auto a = Node(cluster, "node-a");
  auto b = Node(cluster, "node-b");
  ASSERT_TRUE(a->started() && b->started());
  std::vector<std::string> only_b = UsersOnEveryShard(cluster, "leaving-", 4);
  ASSERT_FALSE(only_b.empty());
  std::vector<std::unique_ptr<WsClient>> on_b;
  std::vector<std::string> kept = {"stay-0", "stay-1", "stay-2"};
  std::vector<std::unique_ptr<WsClient>> on_a;
  std::string id;
  for (const std::string& user : only_b) {
    on_b.push_back(Open(*b, user, &id));
    ASSERT_TRUE(on_b.back());
  }
  for (const std::string& user : kept) {
    on_b.push_back(Open(*b, user, &id));
    ASSERT_TRUE(on_b.back());
    on_a.push_back(Open(*a, user, &id));
    ASSERT_TRUE(on_a.back());
  }
  ASSERT_TRUE(WaitTotal(*a, "", only_b.size() + 2 * kept.size())) << Describe(DoList(*a->Stub()));
  auto stub = a->Stub();
  for (const std::string& user : kept) EXPECT_EQ(Delivered(*stub, user), 2) << user;

  // The clients on B read while it drains, as browsers do: each answers the 1001 close.
  std::vector<WsEvent> ends(on_b.size());
  std::vector<std::thread> readers;
  for (size_t i = 0; i < on_b.size(); ++i) {
    readers.emplace_back([&, i] {
      WsEvent e = on_b[i]->Read(seconds(10));
      while (e.kind == WsEvent::kText) e = on_b[i]->Read(seconds(10));  // the message above
      ends[i] = e;
    });
  }
  EXPECT_EQ(b->Terminate(), 0);
  for (std::thread& t : readers) t.join();
  for (const WsEvent& e : ends) {
    EXPECT_EQ(e.kind, WsEvent::kClosed) << e.kind << " " << e.data;
    EXPECT_EQ(e.close_code, 1001);
  }
  // No waiting: as soon as the process is gone.
  v1::ListClientsResponse list = DoList(*stub);
  EXPECT_EQ(list.total(), kept.size()) << Describe(list);
  for (const auto& c : list.clients()) EXPECT_EQ(c.node_id(), "node-a") << Describe(list);
  for (const std::string& user : kept) EXPECT_EQ(Delivered(*stub, user), 1) << user;
  for (const std::string& user : only_b) EXPECT_EQ(Delivered(*stub, user), 0) << user;
}

// Several nodes killed at once (a lost zone, a machine hosting several pods): the 30 s hold for
// all of them, not for the first only. A user with a connection on the survivor and one on each
// of four killed nodes: `delivered` must come down to 1 within 30 s of the kills.
TEST_F(ClusterPresenceTest, NodesKilledTogetherAllStopCountingInDeliveredWithin30s) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  auto a = Node(cluster, "node-a", {"--ping_interval=10m"});
  ASSERT_TRUE(a->started());
  std::vector<std::unique_ptr<PushdProcess>> doomed;
  std::vector<std::unique_ptr<WsClient>> clients;
  std::string survivor_id, id;
  clients.push_back(Open(*a, "kept", &survivor_id));
  ASSERT_TRUE(clients.back());
  for (int i = 0; i < 4; ++i) {
    doomed.push_back(Node(cluster, absl::StrCat("doomed-", i), {"--ping_interval=10m"}));
    ASSERT_TRUE(doomed.back()->started());
    clients.push_back(Open(*doomed.back(), "kept", &id));
    ASSERT_TRUE(clients.back());
  }
  auto stub = a->Stub();
  ASSERT_TRUE(WaitTotal(*a, "", 5)) << Describe(DoList(*stub));
  EXPECT_EQ(Delivered(*stub, "kept"), 5);

  for (auto& node : doomed) node->Signal(SIGKILL);
  for (auto& node : doomed) ASSERT_GE(node->Wait(5000), 0);
  auto killed = steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub).total() == 1; }, seconds(30)))
      << "after 30 s: " << Describe(DoList(*stub));
  std::string trace;  // when `delivered` changed
  int last = 5;
  auto left = seconds(30) - (steady_clock::now() - killed);
  auto down_to_one = [&] {
    int delivered = Delivered(*stub, "kept");
    if (delivered != last) absl::StrAppend(&trace, " ", delivered, "@", MillisSince(killed), "ms");
    last = delivered;
    return delivered == 1;
  };
  EXPECT_TRUE(
      PollEvery(milliseconds(250), std::chrono::duration_cast<milliseconds>(left), down_to_one))
      << "30 s after the kills `delivered` is still " << last << "; changes:" << trace;
  std::cout << "delivered changes after the kills:" << trace << "\n";
  // The survivor's connection is the one left.
  v1::ListClientsResponse list = DoList(*stub, "kept");
  ASSERT_EQ(list.clients_size(), 1) << Describe(list);
  EXPECT_EQ(list.clients(0).connection_id(), survivor_id);
}

// --redis_cluster is checked at start: a plain redis-server (cluster mode off) or a list that is
// not host:port seeds is a bad flag value, as is --redis given with it.
TEST_F(ClusterPresenceTest, RedisClusterFlagRefusesAPlainRedisAndRedisBesideIt) {
  ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
  RedisServer plain;
  ASSERT_TRUE(plain.running());
  const std::vector<std::string> loopback = {"--grpc_listen=127.0.0.1:0",
                                             "--ws_listen=127.0.0.1:0"};
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), loopback.begin(), loopback.end());
    return RunCommand(PushdBinary(), args, {}, 15000);
  };
  // Exit 2, one line on stderr naming every flag in `names` (a name followed by a character
  // that cannot continue a flag name, so "--redis" is not found inside "--redis_cluster").
  auto expect_rejected = [](const RunResult& r, const std::vector<std::string>& names,
                            const std::string& what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(r.exit_status, 2) << "stderr: " << r.err << " stdout: " << r.out;
    EXPECT_EQ(r.out.find("pushd ready"), std::string::npos) << r.out;
    std::string line = r.err;
    if (!line.empty() && line.back() == '\n') line.pop_back();
    EXPECT_FALSE(line.empty());
    EXPECT_EQ(line.find('\n'), std::string::npos) << "more than one line:\n" << r.err;
    for (const std::string& name : names) {
      bool found = false;
      for (size_t at = line.find(name); at != std::string::npos && !found;
           at = line.find(name, at + 1)) {
        char next = at + name.size() < line.size() ? line[at + name.size()] : ' ';
        found = !(std::isalnum(static_cast<unsigned char>(next)) || next == '_');
      }
      EXPECT_TRUE(found) << "'" << name << "' not in: " << line;
    }
  };
  const std::string plain_seed = "127.0.0.1:" + std::to_string(plain.port());

  auto start = steady_clock::now();
  RunResult r = run({"--redis_cluster=" + plain_seed});
  expect_rejected(r, {"--redis_cluster"}, "a plain redis-server as the seed");
  EXPECT_LT(MillisSince(start), 10000) << "took long to give up on a seed that is no cluster";
  // The same seed from the environment, as the Helm chart sets it.
  r = RunCommand(PushdBinary(), loopback, {"PUSHD_REDIS_CLUSTER=" + plain_seed}, 15000);
  expect_rejected(r, {"redis_cluster"}, "PUSHD_REDIS_CLUSTER naming a plain redis-server");

  r = run({"--redis=" + plain.url(), "--redis_cluster=" + plain_seed});
  expect_rejected(r, {"--redis", "--redis_cluster"}, "--redis beside --redis_cluster");

  r = run({"--redis_cluster=not-a-seed-list"});
  expect_rejected(r, {"--redis_cluster"}, "a seed without a port");
}

}  // namespace
}  // namespace push::testing
