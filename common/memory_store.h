#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/store.h"

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
  struct Stream;
  struct Shard;

  Shard& ShardFor(std::string_view user_id);
  // Removes the oldest message of `s`; the caller holds the shard lock.
  void PopFront(Shard& shard, Stream& s);
  // Drops the bookkeeping of a message leaving `s` (bytes, idempotency key).
  void Forget(Stream& s, const Message& m);
  void RemoveExpired(Shard& shard, Stream& s, absl::Time now);
  void Touch(Shard& shard, Stream& s);
  void AddBytes(int64_t delta);
  void EvictIfOverBudget();

  const MemoryStoreOptions options_;
  Clock* const clock_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> bytes_{0};
  absl::Mutex evict_mu_;
};

}  // namespace push::store
