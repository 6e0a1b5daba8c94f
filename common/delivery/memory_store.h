#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/base/clock.h"
#include "common/base/strings.h"
#include "common/delivery/store.h"

namespace push::store {

struct MemoryStoreOptions {
  uint32_t history_size = 1000;       // messages kept per user
  uint64_t max_bytes = 512ull << 20;  // global bound; least recently active users go first
  int shards = 64;
  DeviceLimits devices = {};  // --device_ttl, --max_devices_per_user
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
  void Advance(std::string_view user_id, std::string_view device_id, uint64_t seq,
               Progress progress) override;
  void TouchDevice(std::string_view user_id, std::string_view device_id) override;
  void Receipts(ReceiptsRequest request,
                absl::AnyInvocable<void(absl::StatusOr<ReceiptsResult>)> done) override;
  void Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) override;

  // Drops expired messages and devices. Called periodically.
  void Sweep();

  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t Cursor(std::string_view user_id);
  // The user's devices kept now (expired ones that Sweep has not dropped yet included).
  size_t DeviceCount(std::string_view user_id);

 private:
  // A user's messages, guarded by its shard's `mu` (which the analysis cannot name from here).
  struct Stream;
  struct Device;
  struct DeviceTable;
  // Defined here rather than in memory_store.cc so that the lock annotations below can name `mu`.
  struct Shard {
    absl::Mutex mu;
    StringMap<std::unique_ptr<Stream>> streams ABSL_GUARDED_BY(mu);
    Stream* lru_head[2] ABSL_GUARDED_BY(mu) = {nullptr, nullptr};  // least recently active first
    Stream* lru_tail[2] ABSL_GUARDED_BY(mu) = {nullptr, nullptr};
    // The streams with a device table, which Sweep looks at for expired devices.
    absl::flat_hash_set<Stream*> with_devices ABSL_GUARDED_BY(mu);
    // Lower bounds of its streams' earliest message expiry and device table expiry: until then
    // Sweep passes the shard by without walking its streams (with a day's ttl, all day long).
    absl::Time earliest_expiry ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
    absl::Time earliest_device_expiry ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();

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
  void Touch(Shard& shard, Stream& s, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // The retained message (expired or not) with `message_id`: a caller's id through the stream's
  // index, an id the store made through the seq it names; messages' end when none.
  static std::deque<MessagePtr>::const_iterator FindSeq(const Stream& s,
                                                        std::string_view message_id);
  void AddBytes(int64_t delta);
  // The user's device `device_id` if kept and not expired (an expired one is dropped).
  Device* FindDevice(Shard& shard, Stream& s, std::string_view device_id, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // The device, made when new (dropping expired ones, then the least recently active while the
  // user is at --max_devices_per_user), with its last activity set to `now`.
  Device& ActiveDevice(Shard& shard, Stream& s, std::string_view device_id, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void DropExpiredDevices(Shard& shard, Stream& s, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void DropDevice(Shard& shard, Stream& s, std::string_view device_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Before a stream is erased.
  void DropAllDevices(Shard& shard, Stream& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void EvictIfOverBudget() ABSL_LOCKS_EXCLUDED(evict_mu_);

  const MemoryStoreOptions options_;
  Clock* const clock_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> bytes_{0};
  absl::Mutex evict_mu_;  // one evictor at a time
};

}  // namespace push::store
