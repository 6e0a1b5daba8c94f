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
      store_ = std::make_unique<RedisStore>(
          RedisStoreOptions{.history_size = options.history_size, .devices = options.devices},
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
                  size_t max_messages = 256, size_t max_bytes = 1 << 20,
                  const std::string& device = "") {
    ReadRequest request;
    request.user_id = user;
    request.device_id = device;
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

  // A read of the device's connection (without `since`: from the device's cursor).
  ReadResult ReadDevice(const std::string& user, const std::string& device) {
    return Read(user, std::nullopt, 256, 1 << 20, device);
  }

  absl::StatusOr<ReceiptsResult> Receipts(const std::string& user, const std::string& message_id,
                                          uint64_t seq) {
    auto out = Await<absl::StatusOr<ReceiptsResult>>([&](auto done) {
      store_->Receipts(ReceiptsRequest{user, message_id, seq}, std::move(done));
    });
    if (!out.has_value()) return absl::DeadlineExceededError("no answer");
    return *std::move(out);
  }
  // The receipts of seq as "device:STATE@cursor" ("" for the connections without a device).
  std::vector<std::string> ReceiptsOf(const std::string& user, uint64_t seq) {
    absl::StatusOr<ReceiptsResult> r = Receipts(user, "", seq);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<std::string> out;
    if (!r.ok()) return out;
    EXPECT_EQ(r->seq, seq);
    for (const DeviceReceipt& d : r->receipts) {
      out.push_back(d.device_id + ":" + (d.acked ? "ACKED" : "WRITTEN") + "@" +
                    std::to_string(d.cursor));
    }
    return out;
  }

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
  store_->Advance("alice", "", 2, Progress::kWritten);
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
  store_->Advance("alice", "", 2, Progress::kWritten);
  store_->Advance("alice", "", 1, Progress::kWritten);
  EXPECT_EQ(Cursor("alice"), 2u);
  store_->Advance("alice", "", 100, Progress::kWritten);
  EXPECT_EQ(Cursor("alice"), 3u);
  EXPECT_TRUE(Read("alice").messages.empty());
  // New messages after the clamp are still delivered.
  Append("alice", "4");
  EXPECT_EQ(Seqs(Read("alice")), (Seq{4}));
  // Unknown users have nothing to advance.
  store_->Advance("nobody", "", 5, Progress::kWritten);
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

// The id the embedded store made, given back by a caller that retries with it, is the same key
// (with Redis only while waiting for replicas, whose error names it: RedisStoreTest).
TEST_F(MemoryStoreTest, AnIdTheStoreMadeDedupesWhenGivenBack) {
  MakeStore(MemoryStoreOptions{.history_size = 3});
  AppendResult made = Append("alice", R"("first")");
  ASSERT_FALSE(made.message->id.empty());
  Append("alice", "2");
  AppendResult again = Append("alice", R"("again")", made.message->id);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.message->seq, 1u);
  EXPECT_EQ(again.message->data(), R"("first")");
  // Another user's made id is no key of alice's; nor is a made id with one digit changed.
  AppendResult bobs = Append("bob", "1");
  EXPECT_FALSE(Append("alice", "3", bobs.message->id).duplicate);
  std::string changed = made.message->id;
  changed[0] = changed[0] == '0' ? '1' : '0';
  EXPECT_FALSE(Append("alice", "4", changed).duplicate);
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{2, 3, 4}));  // seq 1 went at history_size 3
  // Evicted, the made id is free again: stored anew, then a key like any other.
  AppendResult reused = Append("alice", "5", made.message->id);
  EXPECT_FALSE(reused.duplicate);
  EXPECT_EQ(reused.message->seq, 5u);
  EXPECT_TRUE(Append("alice", "6", made.message->id).duplicate);
  absl::StatusOr<ReceiptsResult> by_id = Receipts("alice", made.message->id, 0);
  ASSERT_TRUE(by_id.ok()) << by_id.status();
  EXPECT_EQ(by_id->seq, 5u);
}

// Caller ids in the shape of the ids the store makes (24 hex digits) are keys like any other,
// whichever seq their last digits spell: the message's own or another one.
TEST_P(StoreTest, CallerIdsShapedLikeMadeOnesAreKeysLikeAnyOther) {
  MakeStore(MemoryStoreOptions{.history_size = 2});
  const std::string own = "abcdefabcdef000000000001";    // spells seq 1, which it gets
  const std::string other = "abcdefabcdef000000000007";  // spells seq 7; it gets seq 2
  EXPECT_EQ(Append("alice", "1", own).message->seq, 1u);
  EXPECT_EQ(Append("alice", "2", other).message->seq, 2u);
  AppendResult own_again = Append("alice", "x", own);
  EXPECT_TRUE(own_again.duplicate);
  EXPECT_EQ(own_again.message->seq, 1u);
  EXPECT_EQ(Append("alice", "x", other).message->seq, 2u);
  ASSERT_TRUE(Receipts("alice", own, 0).ok());
  EXPECT_EQ(Receipts("alice", other, 0)->seq, 2u);
  // Both evicted: both free again, and nothing is left behind that still answers for them.
  Append("alice", "3");
  Append("alice", "4");
  EXPECT_EQ(Receipts("alice", own, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Receipts("alice", other, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(Append("alice", "5", own).duplicate);
  EXPECT_FALSE(Append("alice", "6", other).duplicate);
  EXPECT_EQ(Seqs(Read("alice", 0)), (Seq{5, 6}));
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

// ---- Devices (CONTRACT §6): per-(user, device) cursors, marks, receipts ----------------------

using Strings = std::vector<std::string>;

TEST_P(StoreTest, DevicesReplayFromTheirOwnCursors) {
  for (int i = 1; i <= 3; ++i) Append("alice", std::to_string(i));
  // A device never seen replays everything retained, whatever the others did.
  ReadResult a = ReadDevice("alice", "phone");
  EXPECT_EQ(a.after, 0u);
  EXPECT_EQ(Seqs(a), (Seq{1, 2, 3}));
  store_->Advance("alice", "phone", 3, Progress::kWritten);
  EXPECT_EQ(ReadDevice("alice", "phone").after, 3u);
  ReadResult b = ReadDevice("alice", "laptop");
  EXPECT_EQ(b.after, 0u);
  EXPECT_EQ(Seqs(b), (Seq{1, 2, 3}));
  // The shared cursor (connections without a device) did not move either.
  EXPECT_EQ(Cursor("alice"), 0u);
  store_->Advance("alice", "laptop", 1, Progress::kWritten);
  Append("alice", "4");
  EXPECT_EQ(Seqs(ReadDevice("alice", "phone")), (Seq{4}));
  EXPECT_EQ(Seqs(ReadDevice("alice", "laptop")), (Seq{2, 3, 4}));
  // And the shared cursor moves without touching the devices'.
  store_->Advance("alice", "", 4, Progress::kWritten);
  EXPECT_EQ(Cursor("alice"), 4u);
  EXPECT_EQ(ReadDevice("alice", "phone").after, 3u);
  EXPECT_EQ(ReadDevice("alice", "laptop").after, 1u);
  // An explicit `after` (since) wins over the device's cursor.
  EXPECT_EQ(Seqs(Read("alice", 1, 256, 1 << 20, "phone")), (Seq{2, 3, 4}));
  // Cursors never move backwards nor past the end, and other users' devices are their own.
  store_->Advance("alice", "phone", 2, Progress::kWritten);
  store_->Advance("alice", "laptop", 99, Progress::kWritten);
  EXPECT_EQ(ReadDevice("alice", "phone").after, 3u);
  EXPECT_EQ(ReadDevice("alice", "laptop").after, 4u);
  Append("bob", "1");
  EXPECT_EQ(ReadDevice("bob", "phone").after, 0u);
}

TEST_P(StoreTest, OnlyAcksMoveTheCursorOfAnAckConnection) {
  for (int i = 1; i <= 3; ++i) Append("alice", std::to_string(i));
  for (std::string device : {"", "tablet"}) {
    SCOPED_TRACE("device '" + device + "'");
    store_->Advance("alice", device, 3, Progress::kWrittenAwaitingAck);
    EXPECT_EQ(Read("alice", std::nullopt, 256, 1 << 20, device).after, 0u);
    store_->Advance("alice", device, 2, Progress::kAcked);
    EXPECT_EQ(Read("alice", std::nullopt, 256, 1 << 20, device).after, 2u);
  }
}

TEST_P(StoreTest, ReceiptsShowWhichDevicesGotTheMessage) {
  AppendResult first = Append("alice", "1");  // the server makes its id
  Append("alice", "2", "order-2");
  Append("alice", "3");
  // Nothing written yet: no receipts.
  EXPECT_EQ(ReceiptsOf("alice", 2), Strings{});
  // A connection without a device and without ack=1 wrote 1..2.
  store_->Advance("alice", "", 2, Progress::kWritten);
  EXPECT_EQ(ReceiptsOf("alice", 2), (Strings{":WRITTEN@2"}));
  // An ack=1 connection of the phone wrote 1..3: written, its cursor still at 0 ...
  store_->Advance("alice", "phone", 3, Progress::kWrittenAwaitingAck);
  EXPECT_EQ(ReceiptsOf("alice", 2), (Strings{":WRITTEN@2", "phone:WRITTEN@0"}));
  EXPECT_EQ(ReceiptsOf("alice", 3), (Strings{"phone:WRITTEN@0"}));
  // ... until it acks 2.
  store_->Advance("alice", "phone", 2, Progress::kAcked);
  EXPECT_EQ(ReceiptsOf("alice", 2), (Strings{":WRITTEN@2", "phone:ACKED@2"}));
  EXPECT_EQ(ReceiptsOf("alice", 3), (Strings{"phone:WRITTEN@2"}));
  store_->Advance("alice", "a-watch", 1, Progress::kAcked);
  EXPECT_EQ(ReceiptsOf("alice", 1), (Strings{":WRITTEN@2", "a-watch:ACKED@1", "phone:ACKED@2"}));

  // By message id: the caller's, and one the server made.
  absl::StatusOr<ReceiptsResult> by_id = Receipts("alice", "order-2", 0);
  ASSERT_TRUE(by_id.ok()) << by_id.status();
  EXPECT_EQ(by_id->seq, 2u);
  EXPECT_EQ(by_id->receipts.size(), 2u);
  by_id = Receipts("alice", first.message->id, 0);
  ASSERT_TRUE(by_id.ok()) << by_id.status();
  EXPECT_EQ(by_id->seq, 1u);
  EXPECT_EQ(by_id->receipts.size(), 3u);

  // What cannot be answered.
  EXPECT_EQ(Receipts("alice", "no-such-id", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Receipts("nobody", "order-2", 0).status().code(), absl::StatusCode::kNotFound);
  absl::Status past = Receipts("alice", "", 4).status();
  EXPECT_EQ(past.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(past.message().find("latest seq"), std::string::npos) << past;
  EXPECT_EQ(Receipts("nobody", "", 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(StoreTest, ReceiptsOfAnExpiredMessageIdAreNotFound) {
  Append("alice", "1", "short", absl::Seconds(10));
  Append("alice", "2", "long", absl::Hours(1));
  store_->Advance("alice", "", 2, Progress::kWritten);
  ASSERT_TRUE(Receipts("alice", "short", 0).ok());
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(Receipts("alice", "short", 0).status().code(), absl::StatusCode::kNotFound);
  // By seq the marks still answer (the seq is not past the latest).
  EXPECT_EQ(ReceiptsOf("alice", 1), (Strings{":WRITTEN@2"}));
  EXPECT_TRUE(Receipts("alice", "long", 0).ok());
}

TEST_P(StoreTest, ADeviceIsKeptForItsTtlAfterItsLastActivity) {
  MakeStore(MemoryStoreOptions{.devices = {.ttl = absl::Hours(1), .max_per_user = 32}});
  for (int i = 1; i <= 3; ++i) Append("alice", std::to_string(i));
  store_->Advance("alice", "phone", 2, Progress::kWritten);
  clock_.Advance(absl::Minutes(50));
  // The connection ends: the ttl counts from here.
  store_->TouchDevice("alice", "phone");
  clock_.Advance(absl::Minutes(59));
  EXPECT_EQ(ReceiptsOf("alice", 2), (Strings{"phone:WRITTEN@2"}));
  EXPECT_EQ(ReadDevice("alice", "phone").after, 2u);  // a connect: activity too
  clock_.Advance(absl::Minutes(59));
  EXPECT_EQ(ReceiptsOf("alice", 2), (Strings{"phone:WRITTEN@2"}));
  clock_.Advance(absl::Minutes(1));
  // An hour without activity: gone, in receipts and for the next connection (which replays
  // everything retained, like a device never seen).
  EXPECT_EQ(ReceiptsOf("alice", 2), Strings{});
  ReadResult r = ReadDevice("alice", "phone");
  EXPECT_EQ(r.after, 0u);
  EXPECT_EQ(Seqs(r), (Seq{1, 2, 3}));
}

TEST_P(StoreTest, TheLeastRecentlyActiveDeviceGoesAtTheLimit) {
  MakeStore(MemoryStoreOptions{.devices = {.ttl = absl::Hours(1), .max_per_user = 3}});
  Append("alice", "1");
  for (std::string device : {"a", "b", "c"}) {
    store_->Advance("alice", device, 1, Progress::kWritten);
    clock_.Advance(absl::Seconds(1));
  }
  store_->TouchDevice("alice", "a");  // a is now the most recently active; b the least
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(ReceiptsOf("alice", 1), (Strings{"a:WRITTEN@1", "b:WRITTEN@1", "c:WRITTEN@1"}));
  store_->Advance("alice", "d", 1, Progress::kWritten);
  EXPECT_EQ(ReceiptsOf("alice", 1), (Strings{"a:WRITTEN@1", "c:WRITTEN@1", "d:WRITTEN@1"}));
  // The late end of b's connection does not bring it back (nor push another out).
  store_->TouchDevice("alice", "b");
  EXPECT_EQ(ReceiptsOf("alice", 1), (Strings{"a:WRITTEN@1", "c:WRITTEN@1", "d:WRITTEN@1"}));
  // A device known already takes no one's place.
  clock_.Advance(absl::Seconds(1));
  store_->Advance("alice", "c", 1, Progress::kAcked);
  EXPECT_EQ(ReceiptsOf("alice", 1), (Strings{"a:WRITTEN@1", "c:ACKED@1", "d:WRITTEN@1"}));
  // Expired devices make room first (a, touched at 3 s, expires at 1h 3s).
  clock_.Advance(absl::Minutes(59) + absl::Seconds(57));
  store_->Advance("alice", "d", 1, Progress::kWritten);  // d stays alive
  clock_.Advance(absl::Seconds(2));
  store_->Advance("alice", "e", 1, Progress::kWritten);
  EXPECT_EQ(ReceiptsOf("alice", 1), (Strings{"c:ACKED@1", "d:WRITTEN@1", "e:WRITTEN@1"}));
  // The connections without a device are no device: never counted, never dropped.
  store_->Advance("alice", "", 1, Progress::kWritten);
  EXPECT_EQ(ReceiptsOf("alice", 1),
            (Strings{":WRITTEN@1", "c:ACKED@1", "d:WRITTEN@1", "e:WRITTEN@1"}));
}

TEST_P(StoreTest, PurgeMovesEveryDevicesCursorToTheEnd) {
  for (int i = 1; i <= 3; ++i) Append("alice", std::to_string(i));
  store_->Advance("alice", "phone", 1, Progress::kWritten);
  store_->Advance("alice", "laptop", 2, Progress::kWrittenAwaitingAck);
  Purge("alice");
  EXPECT_EQ(ReadDevice("alice", "phone").after, 3u);
  EXPECT_EQ(ReadDevice("alice", "laptop").after, 3u);
  EXPECT_EQ(Cursor("alice"), 3u);
  Append("alice", "4");
  EXPECT_EQ(Seqs(ReadDevice("alice", "phone")), (Seq{4}));
  EXPECT_EQ(Seqs(ReadDevice("alice", "laptop")), (Seq{4}));
}

TEST_P(StoreTest, NothingIsKeptForAUserWithoutAStream) {
  store_->Advance("nobody", "phone", 3, Progress::kWritten);
  store_->TouchDevice("nobody", "phone");
  EXPECT_EQ(ReadDevice("nobody", "phone").after, 0u);
  EXPECT_EQ(Append("nobody", "1").message->seq, 1u);
  // The end of a connection of a device never recorded records nothing either.
  store_->TouchDevice("nobody", "phone");
  if (memory_ != nullptr) {
    EXPECT_EQ(memory_->DeviceCount("nobody"), 0u);
  }
  EXPECT_EQ(ReceiptsOf("nobody", 1), Strings{});
  EXPECT_EQ(Seqs(ReadDevice("nobody", "phone")), (Seq{1}));
}

TEST_F(MemoryStoreTest, DevicesCountInTheBytesAndSweepDropsExpiredOnes) {
  MakeStore(MemoryStoreOptions{.devices = {.ttl = absl::Hours(1), .max_per_user = 32}});
  Append("alice", "1");
  const uint64_t before = memory_->bytes();
  store_->Advance("alice", "phone", 1, Progress::kWritten);
  store_->Advance("alice", "a-device-id-long-enough-to-live-on-the-heap", 1, Progress::kWritten);
  EXPECT_EQ(memory_->DeviceCount("alice"), 2u);
  EXPECT_GT(memory_->bytes(), before + 2 * sizeof(uint64_t) * 3);
  clock_.Advance(absl::Minutes(30));
  store_->TouchDevice("alice", "phone");
  clock_.Advance(absl::Minutes(30));
  memory_->Sweep();
  EXPECT_EQ(memory_->DeviceCount("alice"), 1u);
  clock_.Advance(absl::Minutes(30));
  memory_->Sweep();
  EXPECT_EQ(memory_->DeviceCount("alice"), 0u);
  EXPECT_EQ(memory_->bytes(), before);
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

// Sweep passes by a shard whose streams expire later; what it learns on one walk, and what
// appends bring after it, must still lead it to every message as it expires. (Reads hide expired
// messages by themselves: the bytes held tell whether Sweep freed them.)
TEST_F(MemoryStoreTest, SweepReachesEachExpiryOfAShardWhateverOrderTheyCameIn) {
  MakeStore(MemoryStoreOptions{.shards = 1});
  const std::string big = "\"" + std::string(20000, 'x') + "\"";
  Append("alice", big, "", absl::Seconds(10));
  Append("bob", big, "", absl::Seconds(30));
  uint64_t held = memory_->bytes();
  clock_.Advance(absl::Seconds(11));
  memory_->Sweep();
  EXPECT_LT(memory_->bytes(), held - 20000) << "alice's message is still held at 11 s";
  // Earlier than anything the last walk saw.
  Append("carol", big, "", absl::Seconds(5));
  held = memory_->bytes();
  clock_.Advance(absl::Seconds(6));  // 17 s
  memory_->Sweep();
  EXPECT_LT(memory_->bytes(), held - 20000) << "carol's message is still held at 17 s";
  held = memory_->bytes();
  clock_.Advance(absl::Seconds(14));  // 31 s
  memory_->Sweep();
  EXPECT_LT(memory_->bytes(), held - 20000) << "bob's message is still held at 31 s";
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
