#include "common/delivery/memory_store.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/redis/redis_client.h"
#include "common/redis/redis_store.h"
#include "gtest/gtest.h"
#include "tests/testing/fakes.h"
#include "tests/testing/redis_server.h"

// The storage suite: every TEST_P runs against the embedded store and against Redis (a real
// redis-server started by the test); TEST_F(MemoryStoreTest, ...) covers what only the embedded
// store has (sweeping, the global byte budget).
namespace push::store {
namespace {

using ::push::testing::FakeClock;
using ::push::testing::RedisServer;

enum class Backend { kMemory, kRedis };

class StoreTestBase : public ::testing::Test {
 protected:
  virtual Backend backend() const { return Backend::kMemory; }

  void SetUp() override {
    if (backend() == Backend::kRedis) {
      // scripts/setup.sh installs redis-server: its absence is a failure, not a skip.
      ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
      redis_server_ = std::make_unique<RedisServer>();
      ASSERT_TRUE(redis_server_->running());
      redis::ConnectionOptions options;
      options.endpoint.host = "127.0.0.1";
      options.endpoint.port = redis_server_->port();
      options.name = "test";
      options.scripts = RedisStore::Scripts();
      redis_ = std::make_unique<redis::Connection>(std::move(options));
      redis_->Start();
      for (int i = 0; i < 1000 && !redis_->connected(); ++i) absl::SleepFor(absl::Milliseconds(10));
      ASSERT_TRUE(redis_->connected());
    }
    MakeStore(MemoryStoreOptions{});
  }
  void TearDown() override {
    store_.reset();
    if (redis_) redis_->Stop();
  }

  void MakeStore(MemoryStoreOptions options) {
    memory_ = nullptr;
    if (backend() == Backend::kRedis) {
      EXPECT_EQ(redis_server_->Command({"FLUSHALL"}), "OK");
      router_ = std::make_unique<redis::ConnectionRouter>(redis_.get());
      store_ = std::make_unique<RedisStore>(RedisStoreOptions{.history_size = options.history_size},
                                            router_.get(), &clock_);
    } else {
      auto memory = std::make_unique<MemoryStore>(options, &clock_);
      memory_ = memory.get();
      store_ = std::move(memory);
    }
  }

  // The store's callbacks may run on its own thread: wait for them (bounded).
  template <typename T, typename Call>
  static std::optional<T> Await(Call call) {
    auto done = std::make_shared<absl::Notification>();
    auto out = std::make_shared<std::optional<T>>();
    call([done, out](T r) {
      *out = std::move(r);
      done->Notify();
    });
    EXPECT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(10)));
    return done->HasBeenNotified() ? std::move(*out) : std::nullopt;
  }

  AppendResult Append(const std::string& user, const std::string& data,
                      const std::string& message_id = "", absl::Duration ttl = absl::Hours(24)) {
    auto out = Await<absl::StatusOr<AppendResult>>([&](auto done) {
      store_->Append(AppendRequest{user, std::make_shared<std::string>(data), message_id, ttl},
                     std::move(done));
    });
    if (!out.has_value()) return {};
    EXPECT_TRUE(out->ok()) << out->status();
    return out->ok() ? **out : AppendResult{};
  }

  ReadResult Read(const std::string& user, std::optional<uint64_t> after = std::nullopt,
                  size_t max_messages = 256, size_t max_bytes = 1 << 20) {
    ReadRequest request;
    request.user_id = user;
    request.after = after;
    request.max_messages = max_messages;
    request.max_bytes = max_bytes;
    auto out = Await<absl::StatusOr<ReadResult>>(
        [&](auto done) { store_->Read(std::move(request), std::move(done)); });
    if (!out.has_value()) return {};
    EXPECT_TRUE(out->ok()) << out->status();
    return out->ok() ? **out : ReadResult{};
  }

  // The delivered cursor, as a read without `after` starts from it.
  uint64_t Cursor(const std::string& user) { return Read(user).after; }

  void Purge(const std::string& user) {
    auto out = Await<absl::Status>([&](auto done) { store_->Purge(user, std::move(done)); });
    ASSERT_TRUE(out.has_value());
    EXPECT_TRUE(out->ok()) << *out;
  }

  static std::vector<uint64_t> Seqs(const ReadResult& r) {
    std::vector<uint64_t> seqs;
    for (const auto& m : r.messages) seqs.push_back(m->seq);
    return seqs;
  }
  static std::vector<std::string> Datas(const ReadResult& r) {
    std::vector<std::string> out;
    for (const auto& m : r.messages) out.emplace_back(m->data());
    return out;
  }

  FakeClock clock_;
  std::unique_ptr<RedisServer> redis_server_;
  std::unique_ptr<redis::ConnectionRouter> router_;
  std::unique_ptr<redis::Connection> redis_;
  std::unique_ptr<Store> store_;
  MemoryStore* memory_ = nullptr;
};

class StoreTest : public StoreTestBase, public ::testing::WithParamInterface<Backend> {
 protected:
  Backend backend() const override { return GetParam(); }
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(Backend::kMemory, Backend::kRedis),
                         [](const auto& info) {
                           return info.param == Backend::kMemory ? "Memory" : "Redis";
                         });

class MemoryStoreTest : public StoreTestBase {};

using Seq = std::vector<uint64_t>;

TEST_P(StoreTest, SeqCountsUpPerUserIndependently) {
  EXPECT_EQ(Append("alice", "1").message->seq, 1u);
  EXPECT_EQ(Append("alice", "2").message->seq, 2u);
  EXPECT_EQ(Append("bob", "1").message->seq, 1u);
  EXPECT_EQ(Append("alice", "3").message->seq, 3u);
  EXPECT_EQ(Append("bob", "2").message->seq, 2u);

  ReadResult alice = Read("alice", 0);
  EXPECT_EQ(Seqs(alice), (Seq{1, 2, 3}));
  EXPECT_EQ(Datas(alice), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(alice.last_seq, 3u);
  EXPECT_FALSE(alice.more);
  EXPECT_EQ(Seqs(Read("bob", 0)), (Seq{1, 2}));
}

TEST_P(StoreTest, AppendedMessageCarriesIdTimestampAndExpiry) {
  AppendResult made = Append("alice", R"({"a":1})", "", absl::Minutes(5));
  ASSERT_NE(made.message, nullptr);
  EXPECT_FALSE(made.duplicate);
  EXPECT_EQ(made.message->id.size(), 24u);  // the store made one
  EXPECT_EQ(made.message->ts_ms, absl::ToUnixMillis(clock_.Now()));
  EXPECT_EQ(made.message->expires_at, clock_.Now() + absl::Minutes(5));
  EXPECT_EQ(made.message->data(), R"({"a":1})");

  AppendResult given = Append("alice", "2", "my-key");
  EXPECT_EQ(given.message->id, "my-key");
  EXPECT_NE(Append("alice", "3").message->id, made.message->id);
}

TEST_P(StoreTest, ReadAfterASeq) {
  for (int i = 1; i <= 5; ++i) Append("alice", std::to_string(i));
  ReadResult r = Read("alice", 3);
  EXPECT_EQ(r.after, 3u);
  EXPECT_EQ(r.last_seq, 5u);
  EXPECT_EQ(Seqs(r), (Seq{4, 5}));
  EXPECT_TRUE(Read("alice", 5).messages.empty());
  EXPECT_TRUE(Read("alice", 99).messages.empty());
}

TEST_P(StoreTest, ReadOfUnknownUserIsEmpty) {
  ReadResult r = Read("nobody");
  EXPECT_TRUE(r.messages.empty());
  EXPECT_EQ(r.last_seq, 0u);
  EXPECT_EQ(r.after, 0u);
  EXPECT_FALSE(r.more);
  EXPECT_EQ(Read("nobody", 7).after, 7u);
}

TEST_P(StoreTest, ReadWithoutAfterStartsAtTheDeliveredCursor) {
  for (int i = 1; i <= 4; ++i) Append("alice", std::to_string(i));
  EXPECT_EQ(Seqs(Read("alice")), (Seq{1, 2, 3, 4}));
  store_->AdvanceCursor("alice", 2);
  EXPECT_EQ(Cursor("alice"), 2u);
  ReadResult r = Read("alice");
  EXPECT_EQ(r.after, 2u);
  EXPECT_EQ(Seqs(r), (Seq{3, 4}));
  // An explicit `after` wins over the cursor, in both directions.
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{1, 2, 3, 4}));
  EXPECT_EQ(Seqs(Read("alice", 3)), (Seq{4}));
}

TEST_P(StoreTest, CursorNeverMovesBackwardsNorPastTheEnd) {
  for (int i = 1; i <= 3; ++i) Append("alice", std::to_string(i));
  store_->AdvanceCursor("alice", 2);
  store_->AdvanceCursor("alice", 1);
  EXPECT_EQ(Cursor("alice"), 2u);
  store_->AdvanceCursor("alice", 100);
  EXPECT_EQ(Cursor("alice"), 3u);
  EXPECT_TRUE(Read("alice").messages.empty());
  // New messages after the clamp are still delivered.
  Append("alice", "4");
  EXPECT_EQ(Seqs(Read("alice")), (Seq{4}));
  // Unknown users have nothing to advance.
  store_->AdvanceCursor("nobody", 5);
  EXPECT_EQ(Cursor("nobody"), 0u);
  EXPECT_EQ(Append("nobody", "1").message->seq, 1u);
}

TEST_P(StoreTest, HistorySizeEvictsOldestFirstAndReadShowsTheHole) {
  MakeStore(MemoryStoreOptions{.history_size = 3});
  for (int i = 1; i <= 5; ++i) Append("alice", std::to_string(i));
  ReadResult r = Read("alice", 0);
  EXPECT_EQ(Seqs(r), (Seq{3, 4, 5}));
  EXPECT_EQ(r.after, 0u);
  EXPECT_EQ(r.last_seq, 5u);  // 1 and 2 are missing: the caller sees the gap
  EXPECT_EQ(Append("alice", "6").message->seq, 6u);
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{4, 5, 6}));
  // Other users keep their own history.
  Append("bob", "1");
  EXPECT_EQ(Seqs(Read("bob", 0)), (Seq{1}));
}

TEST_P(StoreTest, ExpiredMessagesAreNotRead) {
  Append("alice", "1", "", absl::Hours(1));
  Append("alice", "2", "", absl::Seconds(10));  // short ttl between long ones
  Append("alice", "3", "", absl::Hours(1));
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{1, 2, 3}));
  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{1, 2, 3}));
  clock_.Advance(absl::Seconds(1));  // exactly at expiry it is gone
  ReadResult r = Read("alice", 0);
  EXPECT_EQ(Seqs(r), (Seq{1, 3}));
  EXPECT_EQ(r.last_seq, 3u);
  clock_.Advance(absl::Hours(1));
  r = Read("alice", 0);
  EXPECT_TRUE(r.messages.empty());
  EXPECT_EQ(r.last_seq, 3u);
  EXPECT_EQ(Append("alice", "4").message->seq, 4u);
}

TEST_P(StoreTest, SameMessageIdIsStoredOnce) {
  AppendResult first = Append("alice", R"("first")", "k1");
  EXPECT_FALSE(first.duplicate);
  Append("alice", "2");
  AppendResult again = Append("alice", R"("second")", "k1");
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.message->seq, first.message->seq);
  EXPECT_EQ(again.message->data(), R"("first")");
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{1, 2}));
  EXPECT_EQ(Append("alice", "3").message->seq, 3u);
}

TEST_P(StoreTest, SameMessageIdForAnotherUserIsNotADuplicate) {
  Append("alice", "1", "shared");
  AppendResult bob = Append("bob", "1", "shared");
  EXPECT_FALSE(bob.duplicate);
  EXPECT_EQ(bob.message->seq, 1u);
  EXPECT_EQ(Seqs(Read("bob", 0)), (Seq{1}));
}

TEST_P(StoreTest, MessageIdCanBeReusedOnceItsMessageIsEvicted) {
  MakeStore(MemoryStoreOptions{.history_size = 2});
  Append("alice", "1", "k");
  EXPECT_TRUE(Append("alice", "1", "k").duplicate);
  Append("alice", "2");
  Append("alice", "3");  // evicts seq 1
  AppendResult reused = Append("alice", "4", "k");
  EXPECT_FALSE(reused.duplicate);
  EXPECT_EQ(reused.message->seq, 4u);
  EXPECT_TRUE(Append("alice", "5", "k").duplicate);
}

TEST_P(StoreTest, MessageIdCanBeReusedOnceItsMessageExpired) {
  Append("alice", "1", "k", absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  AppendResult reused = Append("alice", "2", "k");
  EXPECT_FALSE(reused.duplicate);
  EXPECT_EQ(reused.message->seq, 2u);
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{2}));
}

// A key reused after its first message expired (while that message still sits behind a
// longer-lived one) must keep protecting the new message after the old one is dropped.
TEST_P(StoreTest, ReusedMessageIdStillDedupesAfterTheExpiredOriginalIsDropped) {
  MakeStore(MemoryStoreOptions{.history_size = 4});
  Append("alice", "1", "", absl::Hours(1));
  Append("alice", "2", "k", absl::Seconds(5));
  Append("alice", "3", "", absl::Hours(1));
  clock_.Advance(absl::Seconds(6));
  AppendResult reused = Append("alice", "4", "k", absl::Hours(1));
  ASSERT_FALSE(reused.duplicate);
  ASSERT_EQ(reused.message->seq, 4u);
  Append("alice", "5", "", absl::Hours(1));  // evicts seq 1
  Append("alice", "6", "", absl::Hours(1));  // evicts seq 2, the expired original of "k"
  ASSERT_EQ(Seqs(Read("alice", 0)), (Seq{3, 4, 5, 6}));

  AppendResult again = Append("alice", "7", "k", absl::Hours(1));
  EXPECT_TRUE(again.duplicate) << "message_id 'k' (seq 4) is still retained but was stored again "
                                  "as seq "
                               << again.message->seq;
  EXPECT_EQ(again.message->seq, 4u);
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{3, 4, 5, 6}));
}

TEST_P(StoreTest, PurgeDropsMessagesAndKeysButKeepsNumbering) {
  for (int i = 1; i <= 3; ++i) Append("alice", std::to_string(i), "k" + std::to_string(i));
  Append("bob", "1");
  Purge("alice");
  ReadResult r = Read("alice", 0);
  EXPECT_TRUE(r.messages.empty());
  EXPECT_EQ(r.last_seq, 3u);
  EXPECT_EQ(Cursor("alice"), 3u);
  AppendResult next = Append("alice", "4", "k1");  // keys went with the messages
  EXPECT_FALSE(next.duplicate);
  EXPECT_EQ(next.message->seq, 4u);
  EXPECT_EQ(Seqs(Read("alice")), (Seq{4}));
  EXPECT_EQ(Seqs(Read("bob", 0)), (Seq{1}));  // others untouched
  Purge("nobody");                            // nothing to purge is fine
}

TEST_P(StoreTest, ReadPagesByMessageCount) {
  for (int i = 1; i <= 5; ++i) Append("alice", std::to_string(i));
  ReadResult page = Read("alice", 0, 2);
  EXPECT_EQ(Seqs(page), (Seq{1, 2}));
  EXPECT_TRUE(page.more);
  page = Read("alice", 2, 2);
  EXPECT_EQ(Seqs(page), (Seq{3, 4}));
  EXPECT_TRUE(page.more);
  page = Read("alice", 4, 2);
  EXPECT_EQ(Seqs(page), (Seq{5}));
  EXPECT_FALSE(page.more);
  page = Read("alice", 0, 5);
  EXPECT_EQ(page.messages.size(), 5u);
  EXPECT_FALSE(page.more);
}

TEST_P(StoreTest, ReadPagesByBytesAndAlwaysReturnsOneMessage) {
  std::string big = "\"" + std::string(1000, 'x') + "\"";
  for (int i = 0; i < 4; ++i) Append("alice", big);
  size_t frame = Read("alice", 0).messages.at(0)->FrameSize();
  ReadResult page = Read("alice", 0, 256, 2 * frame + frame / 2);
  EXPECT_EQ(Seqs(page), (Seq{1, 2}));
  EXPECT_TRUE(page.more);
  page = Read("alice", 0, 256, 2 * frame);  // exactly two frames fit
  EXPECT_EQ(Seqs(page), (Seq{1, 2}));
  page = Read("alice", 2, 256, 10);  // smaller than one frame: still one
  EXPECT_EQ(Seqs(page), (Seq{3}));
  EXPECT_TRUE(page.more);
  page = Read("alice", 3, 256, 10);
  EXPECT_EQ(Seqs(page), (Seq{4}));
  EXPECT_FALSE(page.more);
}

TEST_P(StoreTest, ExpiredMessagesDoNotCountTowardsPageLimits) {
  Append("alice", "1", "", absl::Seconds(1));
  Append("alice", "2", "", absl::Seconds(1));
  Append("alice", "3", "", absl::Hours(1));
  Append("alice", "4", "", absl::Hours(1));
  clock_.Advance(absl::Seconds(2));
  ReadResult page = Read("alice", 0, 2);
  EXPECT_EQ(Seqs(page), (Seq{3, 4}));
  EXPECT_FALSE(page.more);
}

TEST_F(MemoryStoreTest, SweepFreesExpiredMessages) {
  Append("alice", "\"" + std::string(5000, 'a') + "\"", "", absl::Seconds(10));
  Append("alice", "\"" + std::string(5000, 'a') + "\"", "", absl::Seconds(10));
  Append("bob", "\"" + std::string(5000, 'b') + "\"", "", absl::Hours(1));
  uint64_t before = memory_->bytes();
  clock_.Advance(absl::Seconds(11));
  memory_->Sweep();
  EXPECT_LT(memory_->bytes(), before - 10000);
  EXPECT_TRUE(Read("alice", 0).messages.empty());
  EXPECT_EQ(Read("alice", 0).last_seq, 2u);
  EXPECT_EQ(Seqs(Read("bob", 0)), (Seq{1}));
  EXPECT_EQ(Append("alice", "3").message->seq, 3u);
}

// Sweep is what bounds memory held by expired messages; one stuck behind a longer-lived
// message must be freed too.
TEST_F(MemoryStoreTest, SweepFreesAnExpiredMessageBehindALongerLivedOne) {
  Append("alice", "1", "", absl::Hours(1));
  Append("alice", "\"" + std::string(100000, 'x') + "\"", "", absl::Seconds(10));
  Append("alice", "3", "", absl::Hours(1));
  uint64_t before = memory_->bytes();
  clock_.Advance(absl::Seconds(11));
  memory_->Sweep();
  EXPECT_LT(memory_->bytes(), before - 100000)
      << "the expired 100 kB message is still held after Sweep";
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{1, 3}));
}

TEST_F(MemoryStoreTest, MaxBytesEvictsTheLeastRecentlyActiveUserFirst) {
  const std::string data = "\"" + std::string(3000, 'd') + "\"";
  // Measure what one user and one message cost, then size the budget so that the seventh
  // message overflows it and dropping two messages brings it back under.
  MakeStore(MemoryStoreOptions{});
  Append("probe", data);
  uint64_t first = memory_->bytes();
  Append("probe", data);
  uint64_t message = memory_->bytes() - first;
  uint64_t user = first - message;
  uint64_t budget = 3 * user + 6 * message + message / 2;
  MakeStore(MemoryStoreOptions{.history_size = 1000, .max_bytes = budget});

  Append("a", data);
  clock_.Advance(absl::Seconds(1));
  Append("b", data);
  Append("b", data);
  clock_.Advance(absl::Seconds(1));
  Append("a", data);  // a is now more recently active than b
  Append("a", data);
  clock_.Advance(absl::Seconds(1));
  Append("c", data);
  Append("c", data);  // the seventh message: over the budget

  EXPECT_LE(memory_->bytes(), budget);
  ReadResult b = Read("b", 0);
  EXPECT_TRUE(b.messages.empty());
  EXPECT_EQ(b.last_seq, 2u);  // numbering survives eviction
  EXPECT_EQ(Seqs(Read("a", 0)), (Seq{1, 2, 3}));
  EXPECT_EQ(Seqs(Read("c", 0)), (Seq{1, 2}));
  EXPECT_EQ(Append("b", "3").message->seq, 3u);
}

TEST_F(MemoryStoreTest, ManyUsersStayWithinTheByteBudget) {
  MakeStore(MemoryStoreOptions{.history_size = 1000, .max_bytes = 200000});
  const std::string data = "\"" + std::string(500, 'z') + "\"";
  for (int i = 0; i < 2000; ++i) {
    clock_.Advance(absl::Milliseconds(1));
    Append("user" + std::to_string(i % 300), data);
    ASSERT_LE(memory_->bytes(), 200000u) << "after append " << i;
  }
  // The most recent writer still has its latest message.
  ReadResult last = Read("user" + std::to_string(1999 % 300), 0);
  ASSERT_FALSE(last.messages.empty());
  EXPECT_EQ(last.messages.back()->seq, last.last_seq);
}

}  // namespace
}  // namespace push::store
