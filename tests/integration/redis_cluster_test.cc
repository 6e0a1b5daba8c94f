// Scaling out (CONTRACT §5, issue 4): several real pushd processes sharing one real
// redis-server, on loopback. Routing across nodes, presence, roles, restarts and Redis outages.

#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/node_checks.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

class RedisClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // scripts/setup.sh installs redis-server: its absence is a failure, not a skip.
    ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
    redis_ = std::make_unique<RedisServer>();
    ASSERT_TRUE(redis_->running());
  }

  std::unique_ptr<PushdProcess> Node(const std::string& node_id,
                                     std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--redis=" + redis_->url(), "--node_id=" + node_id};
    args.insert(args.end(), extra.begin(), extra.end());
    auto node = std::make_unique<PushdProcess>(args);
    EXPECT_TRUE(node->started());
    return node;
  }

  // Connects and reads the welcome; returns null (and fails the test) otherwise.
  static std::unique_ptr<WsClient> Connect(const PushdProcess& node, const std::string& user,
                                           const std::string& extra = "") {
    auto ws = ConnectUser(node, user, extra);
    if (!ws) ADD_FAILURE() << "cannot connect " << user;
    return ws;
  }

  std::unique_ptr<RedisServer> redis_;
};

TEST_F(RedisClusterTest, PushOnOneNodeReachesAClientOnAnother) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto ws = Connect(*b, "ursula");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*a, "ursula", 1));
  auto stub = a->Stub();
  v1::PushResponse res;
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(DoPush(*stub, "ursula", R"({"hello":"from a"})", &res).ok());
  EXPECT_EQ(res.seq(), 1u);
  EXPECT_EQ(res.delivered(), 1u);
  std::string data;
  EXPECT_EQ(NextSeq(*ws, &data), 1u);
  EXPECT_EQ(data, R"({"hello":"from a"})");
  // "Within a few milliseconds on loopback": generous here, the machines are shared and busy.
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
}

TEST_F(RedisClusterTest, AUserOnTwoNodesGetsEachMessageOnBothOnce) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto on_a = Connect(*a, "victor");
  auto on_b = Connect(*b, "victor");
  ASSERT_TRUE(on_a && on_b);
  ASSERT_TRUE(WaitListed(*a, "victor", 2));
  auto stub_a = a->Stub();
  auto stub_b = b->Stub();
  // Pushes through both nodes: one numbering, no duplicate or missing seq.
  for (int i = 1; i <= 6; ++i) {
    v1::PushResponse res;
    ASSERT_TRUE(DoPush(i % 2 ? *stub_a : *stub_b, "victor", std::to_string(i), &res).ok());
    EXPECT_EQ(res.seq(), static_cast<uint64_t>(i));
    EXPECT_EQ(res.delivered(), 2u);
  }
  for (WsClient* ws : {on_a.get(), on_b.get()}) {
    for (uint64_t i = 1; i <= 6; ++i) {
      std::string data;
      EXPECT_EQ(NextSeq(*ws, &data), i);
      EXPECT_EQ(data, std::to_string(i));
    }
    ExpectQuiet(*ws);
  }
}

TEST_F(RedisClusterTest, ConcurrentPushersOnTwoNodesNeverDuplicateOrSkipASeq) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  constexpr int kPerNode = 100;
  std::mutex mu;
  std::set<uint64_t> seqs;
  std::atomic<int> failures{0};
  auto pusher = [&](PushdProcess* node, int base) {
    auto stub = node->Stub();
    for (int i = 0; i < kPerNode; ++i) {
      v1::PushResponse res;
      if (!DoPush(*stub, "wendy", std::to_string(base + i), &res).ok()) {
        ++failures;
        continue;
      }
      std::lock_guard<std::mutex> lock(mu);
      EXPECT_TRUE(seqs.insert(res.seq()).second) << "seq " << res.seq() << " given twice";
    }
  };
  std::thread t1(pusher, a.get(), 0);
  std::thread t2(pusher, b.get(), 1000);
  t1.join();
  t2.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(seqs.size(), 2u * kPerNode);
  EXPECT_EQ(*seqs.begin(), 1u);
  EXPECT_EQ(*seqs.rbegin(), 2u * kPerNode);
  // A client resuming from 0 on either node gets them all, in order.
  auto ws = Connect(*b, "wendy", "&since=0");
  ASSERT_TRUE(ws);
  for (uint64_t i = 1; i <= 2 * kPerNode; ++i) ASSERT_EQ(NextSeq(*ws), i);
}

TEST_F(RedisClusterTest, ListClientsCoversEveryNode) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto c1 = Connect(*a, "xena");
  auto c2 = Connect(*a, "yuri");
  auto c3 = Connect(*b, "xena");
  ASSERT_TRUE(c1 && c2 && c3);
  auto stub = b->Stub();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub).total() == 3; }));

  v1::ListClientsResponse all = DoList(*stub);
  ASSERT_EQ(all.clients_size(), 3);
  std::multiset<std::string> nodes;
  for (const auto& c : all.clients()) nodes.insert(c.user_id() + "@" + c.node_id());
  EXPECT_EQ(nodes, (std::multiset<std::string>{"xena@node-a", "xena@node-b", "yuri@node-a"}));
  for (const auto& c : all.clients()) {
    EXPECT_FALSE(c.connection_id().empty());
    EXPECT_EQ(c.remote_address().rfind("127.0.0.1:", 0), 0u) << c.remote_address();
    EXPECT_GT(c.connected_at().seconds(), 0);
  }

  v1::ListClientsResponse xena = DoList(*stub, "xena");
  EXPECT_EQ(xena.total(), 2u);
  EXPECT_EQ(xena.clients_size(), 2);

  // Paging across nodes: two pages, no connection twice, none missing.
  v1::ListClientsResponse page1 = DoList(*stub, "", 2);
  ASSERT_EQ(page1.clients_size(), 2);
  EXPECT_EQ(page1.total(), 3u);
  ASSERT_FALSE(page1.next_page_token().empty());
  v1::ListClientsResponse page2 = DoList(*stub, "", 2, page1.next_page_token());
  ASSERT_EQ(page2.clients_size(), 1);
  EXPECT_TRUE(page2.next_page_token().empty());
  std::set<std::string> ids;
  for (const auto* p : {&page1, &page2}) {
    for (const auto& c : p->clients()) ids.insert(c.connection_id());
  }
  EXPECT_EQ(ids.size(), 3u);

  // A client that leaves leaves the list.
  c2->Close();
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub).total() == 2; }));
}

TEST_F(RedisClusterTest, DeleteClientClosesAConnectionOnAnotherNode) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto ws = Connect(*b, "zack");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*a, "zack", 1));
  auto stub = a->Stub();
  v1::DeleteClientResponse res;
  ASSERT_TRUE(DoDelete(*stub, "zack", &res, "", false, "kicked by test").ok());
  EXPECT_EQ(res.closed(), 1u);
  WsEvent e = ws->Read();
  ASSERT_EQ(e.kind, WsEvent::kClosed) << e.data;
  EXPECT_EQ(e.close_code, 1000);
  EXPECT_EQ(e.close_reason, "kicked by test");
  EXPECT_TRUE(WaitListed(*a, "zack", 0));
  // Nobody left: NOT_FOUND, as on one node.
  EXPECT_EQ(DoDelete(*stub, "zack").error_code(), grpc::StatusCode::NOT_FOUND);
  // The admin HTTP route reaches other nodes too.
  auto again = Connect(*b, "zack");
  ASSERT_TRUE(again);
  ASSERT_TRUE(WaitListed(*a, "zack", 1));
  HttpResponse http = HttpRequest(a->ws_port(), "DELETE", "/deleteClient/zack");
  EXPECT_EQ(http.status, 200) << http.body;
  EXPECT_EQ(again->Read().kind, WsEvent::kClosed);
}

TEST_F(RedisClusterTest, ANodeKilledWithoutGoodbyeLeavesListClientsWithin30Seconds) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto ws = Connect(*b, "kim");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*a, "kim", 1));
  b->Signal(SIGKILL);
  ASSERT_GE(b->Wait(5000), 0);
  auto stub = a->Stub();
  auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub).total() == 0; }, milliseconds(30000)))
      << "the killed node's connection is still listed after 30 s";
  EXPECT_LT(std::chrono::steady_clock::now() - killed, seconds(30));
  // Its user's messages now wait in the stream: nobody is reached.
  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*stub, "kim", "1", &res).ok());
  EXPECT_EQ(res.delivered(), 0u);
  auto back = Connect(*a, "kim");
  ASSERT_TRUE(back);
  EXPECT_EQ(NextSeq(*back), 1u);
}

TEST_F(RedisClusterTest, GracefulStopLeavesListClientsAtOnce) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto ws = Connect(*b, "lena");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*a, "lena", 1));
  EXPECT_EQ(b->Terminate(), 0);
  EXPECT_EQ(DoList(*a->Stub()).total(), 0u);
}

TEST_F(RedisClusterTest, OfflineMessagesSurviveARestartOfEveryNode) {
  {
    auto a = Node("node-a");
    auto stub = a->Stub();
    for (int i = 1; i <= 5; ++i) ASSERT_TRUE(DoPush(*stub, "olga", std::to_string(i)).ok());
    // A connection that read two of them, then left: its cursor is kept too.
    auto ws = Connect(*a, "nina");
    ASSERT_TRUE(ws);
    ASSERT_TRUE(WaitListed(*a, "nina", 1));
    for (int i = 1; i <= 2; ++i) ASSERT_TRUE(DoPush(*stub, "nina", std::to_string(i)).ok());
    EXPECT_EQ(NextSeq(*ws), 1u);
    EXPECT_EQ(NextSeq(*ws), 2u);
    ws->Close();
    ASSERT_TRUE(DoPush(*stub, "nina", "3").ok());
    EXPECT_EQ(a->Terminate(), 0);
  }
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto olga = Connect(*b, "olga");
  ASSERT_TRUE(olga);
  for (uint64_t i = 1; i <= 5; ++i) {
    std::string data;
    EXPECT_EQ(NextSeq(*olga, &data), i);
    EXPECT_EQ(data, std::to_string(i));
  }
  auto nina = Connect(*a, "nina");
  ASSERT_TRUE(nina);
  EXPECT_EQ(NextSeq(*nina), 3u);
  // Numbering continues after the restart.
  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*b->Stub(), "olga", "6", &res).ok());
  EXPECT_EQ(res.seq(), 6u);
}

TEST_F(RedisClusterTest, RolesSplitTheApiFromTheEdge) {
  auto api = Node("api-1", {"--role=api"});
  auto edge = Node("edge-1", {"--role=edge"});
  EXPECT_GT(api->grpc_port(), 0);
  EXPECT_EQ(api->ws_port(), 0);
  EXPECT_EQ(edge->grpc_port(), 0);
  EXPECT_GT(edge->ws_port(), 0);
  auto ws = Connect(*edge, "pia");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*api, "pia", 1));
  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*api->Stub(), "pia", R"("via api")", &res).ok());
  EXPECT_EQ(res.delivered(), 1u);
  std::string data;
  EXPECT_EQ(NextSeq(*ws, &data), 1u);
  EXPECT_EQ(data, R"("via api")");
  v1::ListClientsResponse list = DoList(*api->Stub(), "pia");
  ASSERT_EQ(list.clients_size(), 1);
  EXPECT_EQ(list.clients(0).node_id(), "edge-1");
}

TEST_F(RedisClusterTest, RedisDownMeansNotReadyAndUnavailableButConnectionsStay) {
  auto a = Node("node-a");
  auto ws = Connect(*a, "quinn");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*a, "quinn", 1));
  auto stub = a->Stub();
  EXPECT_EQ(HttpRequest(a->ws_port(), "GET", "/readyz").status, 200);

  redis_->Stop();
  EXPECT_TRUE(WaitFor([&] { return HttpRequest(a->ws_port(), "GET", "/readyz").status == 503; }));
  grpc::Status s = DoPush(*stub, "quinn", "1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_NE(s.error_message().find("Redis"), std::string::npos) << s.error_message();
  // The WebSocket stays open through the outage: the message pushed after it arrives on the
  // same connection below.
  std::this_thread::sleep_for(milliseconds(1500));

  ASSERT_TRUE(redis_->Start());
  EXPECT_TRUE(WaitFor([&] { return HttpRequest(a->ws_port(), "GET", "/readyz").status == 200; },
                      milliseconds(15000)));
  v1::PushResponse res;
  ASSERT_TRUE(WaitFor([&] { return DoPush(*stub, "quinn", "2", &res, "after-outage").ok(); }));
  EXPECT_EQ(res.seq(), 1u);
  EXPECT_EQ(NextSeq(*ws), 1u);
  HttpResponse metrics = HttpRequest(a->ws_port(), "GET", "/metrics");
  EXPECT_NE(metrics.body.find("pushd_redis_up 1"), std::string::npos);
  EXPECT_NE(metrics.body.find("pushd_redis_roundtrip_seconds_count"), std::string::npos);
  EXPECT_EQ(metrics.body.find("pushd_redis_errors_total 0"), std::string::npos)
      << "the outage was not counted";
}

// Only the subscriber link drops (Redis itself stays up): messages published while node B was not
// subscribed reach its client from the stream once it is back.
TEST_F(RedisClusterTest, MessagesPublishedWhileASubscriberWasDownArriveFromTheStream) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto ws = Connect(*b, "sam");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*a, "sam", 1));
  auto stub = a->Stub();
  ASSERT_TRUE(DoPush(*stub, "sam", "1").ok());
  ASSERT_EQ(NextSeq(*ws), 1u);
  // Kill every subscriber connection, then push at once: some of these find nobody subscribed.
  std::string killed = redis_->Command({"CLIENT", "KILL", "TYPE", "pubsub"});
  EXPECT_NE(killed, "0") << killed;
  for (int i = 2; i <= 30; ++i) ASSERT_TRUE(DoPush(*stub, "sam", std::to_string(i)).ok());
  for (uint64_t i = 2; i <= 30; ++i) {
    std::string data;
    ASSERT_EQ(NextSeq(*ws, &data), i);
    ASSERT_EQ(data, std::to_string(i));
  }
  ExpectQuiet(*ws, milliseconds(1500));
}

// A Redis that stops answering (SIGSTOP) fails commands within the command timeout rather than
// letting them pile up, and everything resumes when it continues.
TEST_F(RedisClusterTest, AHungRedisFailsPushesFastAndRecovers) {
  auto a = Node("node-a");
  auto ws = Connect(*a, "hal");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*a, "hal", 1));
  auto stub = a->Stub();
  redis_->Signal(SIGSTOP);
  auto start = std::chrono::steady_clock::now();
  grpc::Status s = DoPush(*stub, "hal", "1", nullptr, "hung-1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(8));
  EXPECT_TRUE(WaitFor([&] { return HttpRequest(a->ws_port(), "GET", "/readyz").status == 503; }));
  redis_->Signal(SIGCONT);
  ASSERT_TRUE(WaitFor([&] { return DoPush(*stub, "hal", "1", nullptr, "hung-1").ok(); },
                      milliseconds(15000)));
  EXPECT_EQ(NextSeq(*ws), 1u);
  ExpectQuiet(*ws);
}

// Redis restarted while pushes flow: every push the caller saw succeed (retrying with its
// message_id after UNAVAILABLE) reaches the connected client exactly once, seqs without holes.
TEST_F(RedisClusterTest, RedisRestartUnderLoadLosesNothingAndDuplicatesNoSeq) {
  auto a = Node("node-a");
  auto b = Node("node-b");
  auto ws = Connect(*b, "rita");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitListed(*a, "rita", 1));
  constexpr int kMessages = 300;
  std::atomic<int> pushed{0};
  std::atomic<int> unavailable{0};
  std::atomic<bool> gave_up{false};
  std::thread pusher([&] {
    auto stub = a->Stub();
    auto deadline = std::chrono::steady_clock::now() + seconds(60);
    for (int i = 1; i <= kMessages && !gave_up; ++i) {
      while (true) {
        v1::PushResponse res;
        grpc::Status s = DoPush(*stub, "rita", std::to_string(i), &res, "m-" + std::to_string(i));
        if (s.ok()) {
          EXPECT_EQ(res.seq(), static_cast<uint64_t>(i));
          break;
        }
        EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
        ++unavailable;
        if (std::chrono::steady_clock::now() > deadline) {
          gave_up = true;
          break;
        }
        std::this_thread::sleep_for(milliseconds(20));
      }
      pushed = i;
      std::this_thread::sleep_for(milliseconds(2));
    }
  });
  ASSERT_TRUE(WaitFor([&] { return pushed.load() >= kMessages / 3; }, milliseconds(30000)));
  redis_->Stop();
  std::this_thread::sleep_for(milliseconds(700));
  ASSERT_TRUE(redis_->Start());
  pusher.join();
  ASSERT_FALSE(gave_up.load());
  EXPECT_GT(unavailable.load(), 0) << "the outage was not seen by the pusher";
  for (uint64_t i = 1; i <= kMessages; ++i) {
    std::string data;
    ASSERT_EQ(NextSeq(*ws, &data, milliseconds(20000)), i);
    ASSERT_EQ(data, std::to_string(i));
  }
  ExpectQuiet(*ws);
}

// --redis_wait_replicas=1 with no replica: every push fails UNAVAILABLE after its WAIT, and the
// appends' WAITs never hold up what shares Redis with them: ListClients, a new connection's replay
// and readiness stay fast while pushes are failing.
TEST_F(RedisClusterTest, WaitReplicasWithoutAReplicaFailsPushesButNothingElse) {
  auto a = Node("node-a", {"--redis_wait_replicas=1"});
  std::atomic<bool> stop{false};
  std::atomic<int> unavailable{0};
  std::vector<std::thread> pushers;
  std::string error;
  std::mutex mu;
  // The pushers stop and are joined however the test body ends (an ASSERT returns early).
  struct Joiner {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~Joiner() {
      stop.store(true);
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } joiner{stop, pushers};
  for (int t = 0; t < 4; ++t) {
    pushers.emplace_back([&, t] {
      auto stub = a->Stub();
      for (int i = 0; !stop.load() && i < 200; ++i) {
        grpc::Status s = DoPush(*stub, "waiter-" + std::to_string(t), "1");
        if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
          unavailable.fetch_add(1);
          std::lock_guard<std::mutex> lock(mu);
          error = s.error_message();
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return unavailable.load() >= 4; }, milliseconds(20000)));
  auto redis_errors = [&] {
    std::string body = HttpRequest(a->ws_port(), "GET", "/metrics").body;
    size_t at = body.find("\npushd_redis_errors_total ");
    return at == std::string::npos ? std::string("missing")
                                   : body.substr(at, body.find('\n', at + 1) - at);
  };
  const std::string errors_before = redis_errors();
  auto stub = a->Stub();
  // Several seconds of failing pushes (each WAIT takes 1 s): replays, lists and readiness are
  // served throughout. A ListClients is a round trip to Redis (a millisecond on loopback); one
  // queued behind the appends' WAITs waits most of a second or more, so the median tells them
  // apart with a wide margin even on a busy machine.
  std::vector<int64_t> list_ms;
  auto until = std::chrono::steady_clock::now() + seconds(5);
  for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
    auto ws = Connect(*a, "reader-" + std::to_string(i));
    ASSERT_TRUE(ws);
    grpc::Status status;
    auto start = std::chrono::steady_clock::now();
    DoList(*stub, "", 10, "", &status);
    list_ms.push_back(MillisSince(start));
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(HttpRequest(a->ws_port(), "GET", "/readyz").status, 200);
    std::this_thread::sleep_for(milliseconds(200));
  }
  ASSERT_GE(list_ms.size(), 3u);
  std::sort(list_ms.begin(), list_ms.end());
  EXPECT_LT(list_ms[list_ms.size() / 2], 400) << "ListClients waited behind the appends' WAITs";
  EXPECT_EQ(redis_errors(), errors_before) << "a Redis link was dropped";
  stop.store(true);
  for (auto& t : pushers) t.join();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_NE(error.find("only 0 of the 1 replicas"), std::string::npos) << error;
  // The caller gave no message_id: the error names the one the message was stored with.
  EXPECT_NE(error.find("retry with message_id \""), std::string::npos) << error;
}

// A connection closed while Redis did not answer keeps no entry once Redis is back: ListClients
// pages past it, `total` does not count it, DeleteClient does not find it.
TEST_F(RedisClusterTest, AConnectionClosedWhileRedisHungLeavesNoEntryBehind) {
  // Clients nobody reads do not answer pings: none is sent during the test.
  auto a = Node("node-a", {"--ping_interval=10m"});
  std::vector<std::unique_ptr<WsClient>> others;
  for (const char* user : {"u1", "u2", "u3"}) {
    others.push_back(Connect(*a, user));
    ASSERT_TRUE(others.back());
  }
  auto gone = Connect(*a, "a0");
  ASSERT_TRUE(gone);
  ASSERT_TRUE(WaitListed(*a, "a0", 1));
  ASSERT_TRUE(WaitListed(*a, "u3", 1));
  // Redis stops answering for longer than the command timeout (2 s): the removal is lost.
  redis_->Command({"CLIENT", "PAUSE", "4000"});
  gone->Close();
  gone.reset();
  std::this_thread::sleep_for(milliseconds(4500));
  auto stub = a->Stub();
  auto listed = [&] {
    std::vector<std::string> users;
    std::string token;
    for (int page = 0; page < 10; ++page) {
      grpc::Status status;
      v1::ListClientsResponse res = DoList(*stub, "", 2, token, &status);
      if (!status.ok()) return std::vector<std::string>{status.error_message()};
      if (res.total() != 3) return std::vector<std::string>{"total " + std::to_string(res.total())};
      for (const auto& c : res.clients()) users.push_back(c.user_id());
      token = res.next_page_token();
      if (token.empty()) break;
    }
    return users;
  };
  std::vector<std::string> seen;
  EXPECT_TRUE(WaitFor(
      [&] {
        seen = listed();
        return seen == std::vector<std::string>{"u1", "u2", "u3"};
      },
      milliseconds(20000)))
      << "listed: " << absl::StrJoin(seen, ",");
  v1::DeleteClientResponse deleted;
  grpc::Status s = DoDelete(*stub, "a0", &deleted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << "closed " << deleted.closed();
  // A filter with a page token from before the user's range lists only that user.
  v1::ListClientsResponse first = DoList(*stub, "", 1);
  ASSERT_EQ(first.clients(0).user_id(), "u1");
  v1::ListClientsResponse filtered = DoList(*stub, "u3", 10, first.next_page_token());
  ASSERT_EQ(filtered.clients_size(), 1);
  EXPECT_EQ(filtered.clients(0).user_id(), "u3");
}

}  // namespace
}  // namespace push::testing
