#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/base/clock.h"
#include "common/base/strings.h"
#include "common/delivery/store.h"

namespace push::store {

struct MemoryStoreOptions {
  uint32_t history_size = 1000;       // messages kept per user
  uint64_t max_bytes = 512ull << 20;  // global bound; least recently active users go first
  int shards = 64;
};

// The embedded store: sharded by user, everything in memory, callbacks run inline.
class MemoryStore final : public Store {
 public:
  explicit MemoryStore(MemoryStoreOptions options, Clock* clock = Clock::Real());
  ~MemoryStore() override;

  void Append(AppendRequest request,
              absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done) override;
  void Read(ReadRequest request,
            absl::AnyInvocable<void(absl::StatusOr<ReadResult>)> done) override;
  void AdvanceCursor(std::string_view user_id, uint64_t seq) override;
  void Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) override;

  // Drops expired messages. Called periodically.
  void Sweep();

  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t Cursor(std::string_view user_id);

 private:
  // A user's messages, guarded by its shard's `mu` (which the analysis cannot name from here).
  struct Stream;
  // Defined here rather than in memory_store.cc so that the lock annotations below can name `mu`.
  struct Shard {
    absl::Mutex mu;
    StringMap<std::unique_ptr<Stream>> streams ABSL_GUARDED_BY(mu);
    Stream* lru_head[2] ABSL_GUARDED_BY(mu) = {nullptr, nullptr};  // least recently active first
    Stream* lru_tail[2] ABSL_GUARDED_BY(mu) = {nullptr, nullptr};

    void Unlink(Stream& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
    // Moves `s` to the most recently active end of the list matching its content.
    void Relink(Stream& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  };

  Shard& ShardFor(std::string_view user_id);
  // Removes the oldest message of `s`.
  void PopFront(Shard& shard, Stream& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Drops the bookkeeping of a message leaving `s` (bytes, idempotency key).
  void Forget(Stream& s, const Message& m);
  void RemoveExpired(Shard& shard, Stream& s, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void Touch(Shard& shard, Stream& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void AddBytes(int64_t delta);
  void EvictIfOverBudget() ABSL_LOCKS_EXCLUDED(evict_mu_);

  const MemoryStoreOptions options_;
  Clock* const clock_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> bytes_{0};
  absl::Mutex evict_mu_;  // one evictor at a time
};

}  // namespace push::store
