#include "common/delivery/hub.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/fakes.h"

namespace push {
namespace {

using ::push::testing::RecordingConnection;

ConnectionInfo Info(std::string user, std::string id) {
  ConnectionInfo info;
  info.user_id = std::move(user);
  info.connection_id = std::move(id);
  info.remote_address = "127.0.0.1:5000";
  info.user_agent = "test";
  info.connected_at = absl::FromUnixSeconds(1700000000);
  return info;
}

std::shared_ptr<RecordingConnection> Conn(std::string user, std::string id) {
  return std::make_shared<RecordingConnection>(Info(std::move(user), std::move(id)), 3, 7);
}

MessagePtr Msg(uint64_t seq) {
  return MakeMessage(seq, "m" + std::to_string(seq), absl::FromUnixSeconds(1),
                     absl::InfiniteFuture(), "{}");
}

std::vector<std::string> ConnectionIds(const std::vector<std::shared_ptr<Connection>>& conns) {
  std::vector<std::string> ids;
  for (const auto& c : conns) ids.push_back(c->info().connection_id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(HubTest, AddAndRemoveTrackSize) {
  Hub hub;
  EXPECT_EQ(hub.size(), 0);
  auto a1 = Conn("alice", "a1");
  auto a2 = Conn("alice", "a2");
  auto b1 = Conn("bob", "b1");
  hub.Add(a1);
  hub.Add(a2);
  hub.Add(b1);
  EXPECT_EQ(hub.size(), 3);
  hub.Remove(*a1);
  EXPECT_EQ(hub.size(), 2);
  EXPECT_EQ(ConnectionIds(hub.Find("alice")), std::vector<std::string>{"a2"});
  // Removing something already gone, or never added, changes nothing.
  hub.Remove(*a1);
  RecordingConnection stranger(Info("alice", "a9"), 3, 7);
  hub.Remove(stranger);
  EXPECT_EQ(hub.size(), 2);
  hub.Remove(*a2);
  hub.Remove(*b1);
  EXPECT_EQ(hub.size(), 0);
  EXPECT_TRUE(hub.All().empty());
}

// The hub keeps no copy of a user id: a user's entry is found by its connections' own. It must
// go on being found once the connection it was first found by is gone (and freed), while the
// table grows around it.
TEST(HubTest, AUsersEntryOutlivesTheConnectionThatOpenedIt) {
  Hub hub(1);
  auto a1 = Conn("alice", "a1");
  auto a2 = Conn("alice", "a2");
  auto a3 = Conn("alice", "a3");
  hub.Add(a1);
  hub.Add(a2);
  hub.Add(a3);
  hub.Remove(*a1);
  a1.reset();
  std::vector<std::shared_ptr<RecordingConnection>> others;
  for (int i = 0; i < 500; ++i) {
    others.push_back(Conn(absl::StrCat("user", i), absl::StrCat("c", i)));
    hub.Add(others.back());
  }
  EXPECT_EQ(ConnectionIds(hub.Find("alice")), (std::vector<std::string>{"a2", "a3"}));
  EXPECT_EQ(hub.Publish("alice", Msg(1)), 2u);
  EXPECT_TRUE(hub.Reserve("alice", 3));
  EXPECT_FALSE(hub.Reserve("alice", 3)) << "two open and one held";
  hub.Release("alice");
  hub.Remove(*a2);
  a2.reset();
  for (int i = 0; i < 500; i += 2) hub.Remove(*others[i]);
  EXPECT_EQ(ConnectionIds(hub.Find("alice")), std::vector<std::string>{"a3"});
  EXPECT_EQ(hub.Publish("alice", Msg(2)), 1u);
  EXPECT_EQ(a3->delivered().size(), 2u);
  hub.Remove(*a3);
  EXPECT_TRUE(hub.Find("alice").empty());
  EXPECT_EQ(hub.Publish("alice", Msg(3)), 0u);
  EXPECT_EQ(hub.size(), 250);
  EXPECT_EQ(ConnectionIds(hub.Find("user1")), std::vector<std::string>{"c1"});
}

TEST(HubTest, PublishReachesEveryConnectionOfTheUserOnly) {
  Hub hub;
  auto a1 = Conn("alice", "a1");
  auto a2 = Conn("alice", "a2");
  auto b1 = Conn("bob", "b1");
  hub.Add(a1);
  hub.Add(a2);
  hub.Add(b1);
  MessagePtr m = Msg(1);
  EXPECT_EQ(hub.Publish("alice", m), 2u);
  ASSERT_EQ(a1->delivered().size(), 1u);
  ASSERT_EQ(a2->delivered().size(), 1u);
  EXPECT_EQ(a1->delivered()[0], m);  // the same shared frame, not a copy
  EXPECT_EQ(a2->delivered()[0], m);
  EXPECT_TRUE(b1->delivered().empty());
  EXPECT_EQ(hub.Publish("carol", Msg(1)), 0u);
  // A user id that is a prefix of another is a different user.
  EXPECT_EQ(hub.Publish("ali", Msg(2)), 0u);

  hub.Remove(*a1);
  EXPECT_EQ(hub.Publish("alice", Msg(2)), 1u);
  EXPECT_EQ(a1->delivered().size(), 1u);
  EXPECT_EQ(a2->delivered().size(), 2u);
}

TEST(HubTest, FindByUserOrByConnectionId) {
  Hub hub;
  hub.Add(Conn("alice", "a1"));
  hub.Add(Conn("alice", "a2"));
  hub.Add(Conn("bob", "b1"));
  EXPECT_EQ(ConnectionIds(hub.Find("alice")), (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(ConnectionIds(hub.Find("alice", "a2")), std::vector<std::string>{"a2"});
  EXPECT_TRUE(hub.Find("alice", "b1").empty());  // someone else's connection
  EXPECT_TRUE(hub.Find("nobody").empty());
  EXPECT_EQ(ConnectionIds(hub.All()), (std::vector<std::string>{"a1", "a2", "b1"}));
}

TEST(HubTest, CloseClosesTheUsersConnectionsWithCodeAndReason) {
  Hub hub;
  auto a1 = Conn("alice", "a1");
  auto a2 = Conn("alice", "a2");
  auto b1 = Conn("bob", "b1");
  hub.Add(a1);
  hub.Add(a2);
  hub.Add(b1);

  EXPECT_EQ(hub.Close("alice", "a2", kCloseNormal, "bye"), 1u);
  EXPECT_TRUE(a1->closes().empty());
  ASSERT_EQ(a2->closes().size(), 1u);
  EXPECT_EQ(a2->closes()[0], (std::pair<uint16_t, std::string>{1000, "bye"}));

  EXPECT_EQ(hub.Close("alice", "", kCloseGoingAway, "shutdown"), 2u);
  ASSERT_EQ(a1->closes().size(), 1u);
  EXPECT_EQ(a1->closes()[0], (std::pair<uint16_t, std::string>{1001, "shutdown"}));
  EXPECT_TRUE(b1->closes().empty());

  EXPECT_EQ(hub.Close("nobody", "", kCloseNormal, "x"), 0u);
  EXPECT_EQ(hub.Close("bob", "nope", kCloseNormal, "x"), 0u);
  EXPECT_TRUE(b1->closes().empty());
}

TEST(HubTest, SnapshotIsSortedByUserThenConnection) {
  Hub hub;
  for (auto [user, id] : std::vector<std::pair<std::string, std::string>>{
           {"carol", "c1"}, {"alice", "zz"}, {"bob", "b1"}, {"alice", "aa"}, {"alice", "mm"}}) {
    hub.Add(Conn(user, id));
  }
  std::vector<ClientSnapshot> all = hub.Snapshot(std::nullopt);
  std::vector<std::pair<std::string, std::string>> keys;
  for (const auto& s : all) keys.emplace_back(s.info.user_id, s.info.connection_id);
  EXPECT_EQ(
      keys,
      (std::vector<std::pair<std::string, std::string>>{
          {"alice", "aa"}, {"alice", "mm"}, {"alice", "zz"}, {"bob", "b1"}, {"carol", "c1"}}));
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all[0].messages_sent, 3u);
  EXPECT_EQ(all[0].queued_bytes, 7u);
  EXPECT_EQ(all[0].info.remote_address, "127.0.0.1:5000");
  EXPECT_EQ(all[0].info.connected_at, absl::FromUnixSeconds(1700000000));

  std::vector<ClientSnapshot> alice = hub.Snapshot(std::string_view("alice"));
  ASSERT_EQ(alice.size(), 3u);
  EXPECT_EQ(alice[0].info.connection_id, "aa");
  EXPECT_EQ(alice[2].info.connection_id, "zz");
  EXPECT_TRUE(hub.Snapshot(std::string_view("dave")).empty());
}

TEST(HubTest, WorksWithASingleShard) {
  Hub hub(1);
  auto a = Conn("alice", "a1");
  auto b = Conn("bob", "b1");
  hub.Add(a);
  hub.Add(b);
  EXPECT_EQ(hub.Publish("alice", Msg(1)), 1u);
  EXPECT_EQ(hub.Publish("bob", Msg(1)), 1u);
  EXPECT_EQ(hub.Snapshot(std::nullopt).size(), 2u);
}

TEST(HubTest, ReserveCountsOpenConnectionsAndHeldSlotsAgainstTheLimit) {
  Hub hub;
  auto a1 = Conn("alice", "1");
  hub.Add(a1);
  // One open plus two reserved reach a limit of 3.
  EXPECT_TRUE(hub.Reserve("alice", 3));
  EXPECT_TRUE(hub.Reserve("alice", 3));
  EXPECT_FALSE(hub.Reserve("alice", 3));
  EXPECT_TRUE(hub.Reserve("bob", 3));  // per user
  // A reserved slot taken over by its connection still counts; a released one does not.
  auto a2 = Conn("alice", "2");
  hub.Add(a2, /*reserved=*/true);
  EXPECT_FALSE(hub.Reserve("alice", 3));
  hub.Release("alice");
  EXPECT_TRUE(hub.Reserve("alice", 3));
  EXPECT_FALSE(hub.Reserve("alice", 3));
  // Closing a connection frees its slot.
  hub.Release("alice");
  hub.Remove(*a1);
  EXPECT_TRUE(hub.Reserve("alice", 3));
  EXPECT_EQ(hub.Find("alice").size(), 1u);
  EXPECT_EQ(hub.size(), 1);
}

TEST(HubTest, ConcurrentReservationsNeverPassTheLimit) {
  Hub hub(4);
  constexpr uint32_t kLimit = 5;
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        if (hub.Reserve("carol", kLimit)) ++granted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), static_cast<int>(kLimit));
}

TEST(HubTest, ConcurrentPublishAddAndRemove) {
  Hub hub(4);
  constexpr int kUsers = 8;
  constexpr int kRounds = 2000;
  // One permanent connection per user: every publish must reach it.
  std::vector<std::shared_ptr<RecordingConnection>> permanent;
  for (int u = 0; u < kUsers; ++u) {
    permanent.push_back(Conn("user" + std::to_string(u), "p"));
    hub.Add(permanent.back());
  }
  std::atomic<uint64_t> published_to{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&hub, t] {
      for (int i = 0; i < kRounds; ++i) {
        auto c = Conn(absl::StrCat("user", (i + t) % kUsers), absl::StrCat("t", t));
        hub.Add(c);
        hub.Snapshot(std::nullopt);
        hub.Remove(*c);
      }
    });
  }
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&hub, &published_to, t] {
      for (int i = 0; i < kRounds; ++i) {
        uint32_t n = hub.Publish("user" + std::to_string((i + t) % kUsers), Msg(i + 1));
        EXPECT_GE(n, 1u);
        published_to += n;
      }
    });
  }
  for (auto& th : threads) th.join();

  EXPECT_EQ(hub.size(), kUsers);
  size_t permanent_deliveries = 0;
  for (const auto& c : permanent) permanent_deliveries += c->delivered().size();
  EXPECT_EQ(permanent_deliveries, size_t{2 * kRounds});
  EXPECT_GE(published_to.load(), uint64_t{2 * kRounds});
}

}  // namespace
}  // namespace push
