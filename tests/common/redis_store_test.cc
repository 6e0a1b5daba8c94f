// What the Redis store does beyond the storage suite (memory_store_test.cc runs that suite on a
// real redis-server too): keys an older pushd left behind, and --redis_wait_replicas on one
// Redis with and without a replica.

#include "common/redis/redis_store.h"

#include <future>
#include <memory>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/redis/router.h"
#include "gtest/gtest.h"
#include "tests/testing/redis_cluster.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/test_util.h"

namespace push::store {
namespace {

using push::testing::RedisServer;

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
    ASSERT_TRUE(redis_.running());
  }
  void TearDown() override {
    store_.reset();
    if (connection_) connection_->Stop();
  }

  void Open(int wait_replicas, DeviceLimits devices = {},
            absl::Duration cursor_linger = absl::Milliseconds(2)) {
    redis::ConnectionOptions options;
    options.endpoint.host = "127.0.0.1";
    options.endpoint.port = redis_.port();
    options.name = "test";
    options.scripts = RedisStore::Scripts();
    options.wait_replicas = wait_replicas;
    options.wait_timeout = absl::Seconds(1);  // pushd's own
    connection_ = std::make_unique<redis::Connection>(std::move(options));
    connection_->Start();
    ASSERT_TRUE(
        push::testing::WaitFor([&] { return connection_->connected(); }, std::chrono::seconds(10)));
    router_ = std::make_unique<redis::ConnectionRouter>(connection_.get());
    RedisStoreOptions store_options;
    store_options.wait_replicas = wait_replicas > 0;
    store_options.devices = devices;
    store_options.cursor_linger = cursor_linger;
    store_ = std::make_unique<RedisStore>(store_options, router_.get());
  }

  absl::StatusOr<AppendResult> Append(const std::string& user, const std::string& data,
                                      const std::string& id = "") {
    std::promise<absl::StatusOr<AppendResult>> p;
    AppendRequest r;
    r.user_id = user;
    r.payload = std::make_shared<std::string>(data);
    r.message_id = id;
    r.ttl = absl::Hours(1);
    store_->Append(std::move(r),
                   [&](absl::StatusOr<AppendResult> v) { p.set_value(std::move(v)); });
    return p.get_future().get();
  }

  absl::StatusOr<ReadResult> Read(const std::string& user, std::optional<uint64_t> after) {
    std::promise<absl::StatusOr<ReadResult>> p;
    ReadRequest r;
    r.user_id = user;
    r.after = after;
    store_->Read(std::move(r), [&](absl::StatusOr<ReadResult> v) { p.set_value(std::move(v)); });
    return p.get_future().get();
  }

  RedisServer redis_;
  std::unique_ptr<redis::Connection> connection_;
  std::unique_ptr<redis::ConnectionRouter> router_;
  std::unique_ptr<RedisStore> store_;
};

// An older pushd kept pushd:s:<user>, pushd:m:<user> and pushd:i:<user>: upgrading on one Redis
// keeps a waiting user's messages, numbering, cursor and idempotency keys.
TEST_F(RedisStoreTest, AnOlderPushdsKeysAreAdoptedOnTheUsersFirstTouch) {
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  const std::string expires = std::to_string(now_ms + 3600 * 1000);
  for (int seq = 1; seq <= 3; ++seq) {
    ASSERT_EQ(redis_.Command({"XADD", "pushd:s:alice", "0-" + std::to_string(seq), "i",
                              "old-" + std::to_string(seq), "t", std::to_string(now_ms), "e",
                              expires, "d", std::to_string(seq * 10)}),
              "0-" + std::to_string(seq));
  }
  redis_.Command({"HSET", "pushd:m:alice", "seq", "3", "cur", "1"});
  redis_.Command({"HSET", "pushd:i:alice", "old-3", "3"});
  Open(0);

  // Replay after the old cursor: seqs 2 and 3.
  absl::StatusOr<ReadResult> read = Read("alice", std::nullopt);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->after, 1u);
  EXPECT_EQ(read->last_seq, 3u);
  ASSERT_EQ(read->messages.size(), 2u);
  EXPECT_EQ(read->messages[0]->seq, 2u);
  EXPECT_EQ(read->messages[1]->data(), "30");
  // Numbering goes on; the old idempotency key still holds.
  absl::StatusOr<AppendResult> next = Append("alice", "40");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->message->seq, 4u);
  absl::StatusOr<AppendResult> again = Append("alice", "30", "old-3");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->message->seq, 3u);
  EXPECT_EQ(redis_.Command({"EXISTS", "pushd:s:alice", "pushd:m:alice", "pushd:i:alice"}), "0");
  // A user who already has keys in the new layout keeps them: old keys written after that (by
  // an older node still running) are not mixed in.
  ASSERT_TRUE(Append("bob", "1").ok());
  redis_.Command({"HSET", "pushd:m:bob", "seq", "9"});
  EXPECT_EQ(Append("bob", "2")->message->seq, 2u);
  EXPECT_EQ(redis_.Command({"HGET", "pushd:m:bob", "seq"}), "9");
}

// --redis_wait_replicas=1 with no replica: the push fails UNAVAILABLE and saying why, and the
// message stays invisible; once a replica is attached, the retry with the same message_id (the
// caller's, or the one the error named) is answered with the stored message's seq, which reads
// then return once.
TEST_F(RedisStoreTest, WaitReplicasFailsWithoutAReplicaAndCommitsOnceOneAcknowledges) {
  Open(1);
  absl::StatusOr<AppendResult> first = Append("carol", "\"hello\"", "m-1");
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(first.status().message().find("only 0 of the 1 replicas"), std::string::npos)
      << first.status();
  EXPECT_NE(first.status().message().find("retry with the same message_id"), std::string::npos)
      << first.status();
  // Without a message_id: the error names the id the message was stored with.
  absl::StatusOr<AppendResult> made = Append("carol", "\"made\"");
  ASSERT_FALSE(made.ok());
  const std::string advice(made.status().message());
  const std::string lead = "retry with message_id \"";
  size_t at = advice.find(lead);
  ASSERT_NE(at, std::string::npos) << advice;
  at += lead.size();
  const std::string made_id = advice.substr(at, advice.find('"', at) - at);
  ASSERT_FALSE(made_id.empty()) << advice;
  absl::StatusOr<ReadResult> read = Read("carol", 0);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->last_seq, 0u) << "a message the replicas did not confirm was visible";
  EXPECT_TRUE(read->messages.empty());

  RedisServer replica;
  ASSERT_TRUE(replica.running());
  ASSERT_EQ(replica.Command({"REPLICAOF", "127.0.0.1", std::to_string(redis_.port())}), "OK");
  auto attached = std::chrono::steady_clock::now();
  absl::StatusOr<AppendResult> retry;
  ASSERT_TRUE(push::testing::WaitFor(
      [&] {
        retry = Append("carol", "\"hello\"", "m-1");
        return retry.ok();
      },
      std::chrono::seconds(30)))
      << retry.status();
  std::cout << "the retry succeeded " << push::testing::MillisSince(attached)
            << " ms after the replica was attached" << std::endl;
  EXPECT_EQ(retry->message->seq, 1u);
  EXPECT_EQ(retry->message->data(), "\"hello\"");
  // The retry with the id the server made: stored once too.
  absl::StatusOr<AppendResult> made_retry;
  ASSERT_TRUE(push::testing::WaitFor(
      [&] {
        made_retry = Append("carol", "\"made\"", made_id);
        return made_retry.ok();
      },
      std::chrono::seconds(30)))
      << made_retry.status();
  EXPECT_EQ(made_retry->message->seq, 2u);
  // A replica on a busy machine can miss one WAIT's deadline: the caller retries with the id,
  // as the contract says, and the message is stored once.
  absl::StatusOr<AppendResult> second;
  ASSERT_TRUE(push::testing::WaitFor(
      [&] {
        second = Append("carol", "\"again\"", "m-2");
        return second.ok();
      },
      std::chrono::seconds(30)))
      << second.status();
  EXPECT_EQ(second->message->seq, 3u);
  read = Read("carol", 0);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->last_seq, 3u);
  ASSERT_EQ(read->messages.size(), 3u);
  EXPECT_EQ(read->messages[0]->id, "m-1");
  EXPECT_EQ(read->messages[1]->id, made_id);
  EXPECT_EQ(read->messages[1]->data(), "\"made\"");
  EXPECT_EQ(read->messages[2]->data(), "\"again\"");
  // The replica has all three.
  EXPECT_EQ(replica.Command({"XLEN", "pushd:{carol}:s"}), "3");
}

// After a failover the new primary holds every message a client was sent (WAIT confirmed them)
// but may lack the last commit's mark: a client resuming from such a message is caught up, not
// ahead of the stream (which would replay everything), and its cursor can reach it.
TEST_F(RedisStoreTest, AClientPastALaggingCommitMarkIsCaughtUp) {
  Open(0);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(Append("dave", std::to_string(i)).ok());
  redis_.Command({"HSET", "pushd:{dave}:m", "com", "4"});
  absl::StatusOr<ReadResult> read = Read("dave", 5);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->after, 5u);
  EXPECT_EQ(read->last_seq, 5u);
  EXPECT_TRUE(read->messages.empty());
  read = Read("dave", 3);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->last_seq, 4u);
  ASSERT_EQ(read->messages.size(), 1u) << "past the committed mark";
  EXPECT_EQ(read->messages[0]->seq, 4u);
  store_->Advance("dave", "", 5, Progress::kWritten);
  EXPECT_TRUE(push::testing::WaitFor(
      [&] {
        return redis_.Command({"HGET", "pushd:{dave}:m", "cur"}) == "5";
      },
      std::chrono::seconds(5)));
}

// The devices' hash: only a device makes it (the connections without one keep their marks in m,
// one script run per move as before), it expires --device_ttl after the last activity, and it
// never holds more than --max_devices_per_user devices.
TEST_F(RedisStoreTest, TheDevicesHashIsBoundedAndExpiresWithTheTtl) {
  Open(0, DeviceLimits{.ttl = absl::Minutes(10), .max_per_user = 3});
  ASSERT_TRUE(Append("erin", "1").ok());
  store_->Advance("erin", "", 1, Progress::kWritten);
  store_->Advance("erin", "", 1, Progress::kWrittenAwaitingAck);
  ASSERT_TRUE(push::testing::WaitFor(
      [&] {
        return redis_.Command({"HMGET", "pushd:{erin}:m", "cur", "w", "a"}) == "1 1 (nil)";
      },
      std::chrono::seconds(5)))
      << redis_.Command({"HMGET", "pushd:{erin}:m", "cur", "w", "a"});
  EXPECT_EQ(redis_.Command({"EXISTS", "pushd:{erin}:d"}), "0");
  for (int i = 0; i < 8; ++i) {
    store_->Advance("erin", "device-" + std::to_string(i), 1, Progress::kWritten);
  }
  ASSERT_TRUE(push::testing::WaitFor(
      [&] {
        return redis_.Command({"HEXISTS", "pushd:{erin}:d", "device-7"}) == "1";
      },
      std::chrono::seconds(5)));
  EXPECT_EQ(redis_.Command({"HLEN", "pushd:{erin}:d"}), "3");
  int64_t pttl = 0;
  ASSERT_TRUE(absl::SimpleAtoi(redis_.Command({"PTTL", "pushd:{erin}:d"}), &pttl));
  EXPECT_GT(pttl, 9 * 60 * 1000);
  EXPECT_LE(pttl, 10 * 60 * 1000);
}

// How many times Redis ran a command since the last CONFIG RESETSTAT (INFO commandstats).
int64_t Calls(const std::string& info, const std::string& command) {
  const std::string prefix = absl::StrCat("cmdstat_", command, ":calls=");
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    if (!absl::ConsumePrefix(&line, prefix)) continue;
    int64_t n = 0;
    if (absl::SimpleAtoi(line.substr(0, line.find(',')), &n)) return n;
  }
  return 0;
}

// Cursor moves are batched: they wait for the linger (here a minute, so only the flushes can
// send them), go out as one script for many users, keep one move per (user, device, progress)
// at its highest seq, and go out at once before a read, a purge or a receipt of the user, on a
// closing connection (FlushCursor), and when the store stops.
TEST_F(RedisStoreTest, CursorMovesGoOutTogetherAndBeforeAnythingThatReadsThem) {
  Open(0, DeviceLimits{.ttl = absl::Hours(1), .max_per_user = 4}, absl::Minutes(1));
  for (int seq = 1; seq <= 3; ++seq) ASSERT_TRUE(Append("alice", std::to_string(seq)).ok());
  ASSERT_TRUE(Append("bob", "1").ok());
  store_->Advance("alice", "", 2, Progress::kWritten);
  store_->Advance("bob", "phone", 1, Progress::kWritten);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(redis_.Command({"HGET", "pushd:{alice}:m", "cur"}), "(nil)");
  EXPECT_EQ(redis_.Command({"EXISTS", "pushd:{bob}:d"}), "0");
  // The read starts after the cursor the move set: nothing written is replayed.
  auto read = Read("alice", std::nullopt);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->after, 2u);
  ASSERT_EQ(read->messages.size(), 1u);
  EXPECT_EQ(read->messages[0]->seq, 3u);
  // Bob's move was waiting for the same shard (one Redis): it went with it.
  EXPECT_EQ(redis_.Command({"HEXISTS", "pushd:{bob}:d", "phone"}), "1");

  // 100 users, each moved three times (the last move the highest), one also acked: one script.
  for (int u = 0; u < 100; ++u) {
    for (int seq = 1; seq <= 3; ++seq) ASSERT_TRUE(Append(absl::StrCat("u", u), "x").ok());
  }
  redis_.Command({"CONFIG", "RESETSTAT"});
  for (int seq = 1; seq <= 3; ++seq) {
    for (int u = 0; u < 100; ++u) {
      store_->Advance(absl::StrCat("u", u), "", seq, Progress::kWritten);
    }
  }
  store_->Advance("u7", "", 1, Progress::kAcked);
  store_->Advance("u7", "", 3, Progress::kWritten);  // lower moves are kept out by the highest
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(Calls(redis_.Command({"INFO", "commandstats"}), "evalsha"), 0);
  store_->FlushCursor("u1");
  ASSERT_TRUE(push::testing::WaitFor(
      [&] {
        return redis_.Command({"HGET", "pushd:{u99}:m", "cur"}) == "3";
      },
      std::chrono::seconds(5)));
  EXPECT_EQ(Calls(redis_.Command({"INFO", "commandstats"}), "evalsha"), 1);
  for (int u = 0; u < 100; ++u) {
    EXPECT_EQ(redis_.Command({"HMGET", absl::StrCat("pushd:{u", u, "}:m"), "cur", "w"}), "3 3")
        << "u" << u;
  }
  EXPECT_EQ(redis_.Command({"HGET", "pushd:{u7}:m", "a"}), "1");

  // Stop sends what waits; later moves go out one by one.
  store_->Advance("alice", "", 3, Progress::kWritten);
  store_->Stop();
  ASSERT_TRUE(push::testing::WaitFor(
      [&] {
        return redis_.Command({"HGET", "pushd:{alice}:m", "cur"}) == "3";
      },
      std::chrono::seconds(5)));
  store_->Advance("bob", "", 1, Progress::kWritten);
  ASSERT_TRUE(push::testing::WaitFor(
      [&] {
        return redis_.Command({"HGET", "pushd:{bob}:m", "cur"}) == "1";
      },
      std::chrono::seconds(5)));
  EXPECT_TRUE(store_->FlushCursors(absl::Seconds(5)));
}

// On a Redis Cluster a batch is per shard. A router that thinks one shard serves every slot (a
// stale map) makes batches that reach other shards' slots: Redis refuses them, and every move is
// sent again on its own, to its own shard. No move is lost either way.
class RedisStoreClusterTest : public push::testing::RedisClusterSuite {};

class OneShardRouter final : public redis::Router {
 public:
  explicit OneShardRouter(redis::Router* real) : real_(real) {}
  void Command(uint16_t slot, std::vector<std::string> argv, redis::Callback done) override {
    real_->Command(slot, std::move(argv), std::move(done));
  }
  void Durable(uint16_t slot, std::vector<std::string> argv, redis::Callback done) override {
    real_->Durable(slot, std::move(argv), std::move(done));
  }
  bool cluster() const override { return true; }
  int ShardOf(uint16_t) const override { return 0; }

 private:
  redis::Router* const real_;
};

TEST_F(RedisStoreClusterTest, MovesReachEveryShardEvenWhenTheMapIsWrong) {
  push::testing::RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  auto seeds = redis::ParseSeeds(cluster.seeds());
  ASSERT_TRUE(seeds.ok());
  redis::ClusterOptions c;
  c.seeds = *seeds;
  c.name = "store";
  c.scripts = RedisStore::Scripts();
  redis::ClusterClient client(std::move(c));
  ASSERT_TRUE(client.Start().ok());
  redis::ClusterRouter real(&client);
  OneShardRouter wrong(&real);
  for (redis::Router* router : std::vector<redis::Router*>{&real, &wrong}) {
    const bool stale = router == &wrong;
    RedisStoreOptions options;
    options.cursor_linger = absl::Minutes(1);
    RedisStore store(options, router);
    std::set<int> shards;
    const std::string prefix = stale ? "w" : "r";
    for (int u = 0; u < 30; ++u) {
      std::string user = absl::StrCat(prefix, u);
      shards.insert(client.ShardOf(redis_schema::UserSlot(user)));
      std::promise<absl::StatusOr<AppendResult>> p;
      AppendRequest r;
      r.user_id = user;
      r.payload = std::make_shared<std::string>("x");
      r.ttl = absl::Hours(1);
      store.Append(std::move(r),
                   [&](absl::StatusOr<AppendResult> v) { p.set_value(std::move(v)); });
      ASSERT_TRUE(p.get_future().get().ok());
    }
    ASSERT_EQ(shards.size(), 3u);  // the users are on every shard
    const std::vector<int> primaries =
        cluster.NodesWithRole(push::testing::RedisCluster::Role::kPrimary);
    ASSERT_EQ(primaries.size(), 3u);
    for (int port : primaries) cluster.Command(port, {"CONFIG", "RESETSTAT"});
    for (int u = 0; u < 30; ++u) store.Advance(absl::StrCat(prefix, u), "", 1, Progress::kWritten);
    EXPECT_TRUE(store.FlushCursors(absl::Seconds(10)));
    int64_t scripts = 0;
    for (int port : primaries) {
      scripts += Calls(cluster.Command(port, {"INFO", "commandstats"}).str, "evalsha");
    }
    // One script per shard; with the stale map, the refused batch and then one per move.
    if (stale) {
      EXPECT_EQ(scripts, 31);
    } else {
      EXPECT_EQ(scripts, 3);
    }
    for (int u = 0; u < 30; ++u) {
      std::string user = absl::StrCat(prefix, u);
      int port = cluster.PrimaryOf(redis_schema::UserSlot(user));
      EXPECT_EQ(cluster.Command(port, {"HGET", redis_schema::MetaKey(user), "cur"}).str, "1")
          << user << (stale ? " (stale map)" : "");
    }
  }
  client.Stop();
}

}  // namespace
}  // namespace push::store
