#pragma once

#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/delivery/store.h"
#include "common/redis/redis_schema.h"
#include "common/redis/router.h"

namespace push::store {

// The key layout and what goes through Redis between nodes: common/redis/redis_schema.h.
//
// Every operation is one Lua script on the user's keys (one slot, so one shard of a cluster):
// the append assigns the seq, stores, checks idempotency and publishes on the user's channel
// atomically, so two nodes pushing to one user never produce a duplicate or missing seq, and an
// instance subscribed to the user's channel before the append always gets the publish.
//
// With wait_replicas (--redis_wait_replicas) a push is stored, then WAIT confirms the replicas
// hold it (the router's Durable), then the commit script makes it visible to reads and publishes
// it. A message no client has seen is all a failover can lose, so a new primary can never hand
// its seq to a different message that a client sees.
//
// Cursor moves (Advance, TouchDevice) are batched: the moves of `cursor_linger` go out together,
// one script per shard (kCursorScript), with repeated moves of one (user, device, progress) kept
// once at their highest seq. Before a Read, Receipts or Purge of a user, and when a connection of
// the user is closing (FlushCursor), the moves waiting for that user's shard go out at once, on the
// connection the read then takes, so a reconnect or a receipt on this node always sees them. A
// crash loses at most the moves of the last linger: those messages are replayed to the next
// connection without `since`, never lost.
struct RedisStoreOptions {
  uint32_t history_size = 1000;
  bool wait_replicas = false;
  DeviceLimits devices = {};  // --device_ttl, --max_devices_per_user
  absl::Duration cursor_linger = absl::Milliseconds(2);
};

class RedisStore final : public Store {
 public:
  // `router` must outlive the store, and its connections have Scripts() among their scripts.
  RedisStore(RedisStoreOptions options, redis::Router* router, Clock* clock = Clock::Real());
  ~RedisStore() override;  // Stop()
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  static std::vector<std::string> Scripts();

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
  void FlushCursor(std::string_view user_id) override;

  // Sends every batched cursor move and waits up to `timeout` until Redis answered every batch
  // sent so far: true when it did (the drain, before the process goes).
  bool FlushCursors(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(batch_mu_, send_mu_);
  // Sends what is batched and ends the batching thread; later moves go out one by one. Before
  // the router's connections stop. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(batch_mu_, send_mu_);

  // What arrives on a user's channel (a subscriber link, on its thread): a message the append
  // script of any node published goes to the sink, the hub; a close command that DeleteClient on
  // any node sent goes to the handler (the directory's).
  void OnChannelMessage(std::string_view payload);
  void SetCloseCommandHandler(absl::AnyInvocable<void(const redis_schema::CloseCommand&)> handler) {
    on_close_command_ = std::move(handler);
  }

 private:
  static constexpr int kAllShards = -2;  // FlushShard: every batch (-1 is "no shard known")
  static constexpr size_t kMaxMovesPerScript = 128;
  static constexpr size_t kMoveFields = 8;
  // One move of a batch: the script's kMoveFields fields, and the user's slot.
  struct Move {
    uint16_t slot = 0;
    std::vector<std::string> fields;
  };
  struct Batch {
    std::vector<Move> moves;
    // (user, device, progress) -> its move in `moves` (fields[2] is the seq).
    absl::flat_hash_map<std::string, size_t> index;
  };
  // Batches a move (fire and forget): `kind` as the script's progress argument.
  void Cursor(std::string_view user_id, std::string_view device_id, uint64_t seq, const char* kind)
      ABSL_LOCKS_EXCLUDED(batch_mu_);
  // Sends the batch waiting for `shard` (kAllShards: every shard's).
  void FlushShard(int shard) ABSL_LOCKS_EXCLUDED(batch_mu_, send_mu_);
  // One script per at most kMaxMovesPerScript moves. A failed batch of several moves is sent
  // again one move per script, each to its own slot's shard (the map may have changed).
  void Send(std::vector<Move> moves) ABSL_LOCKS_EXCLUDED(batch_mu_);
  void FlushLoop() ABSL_LOCKS_EXCLUDED(batch_mu_, send_mu_);
  std::string DeviceTtlMs() const;
  void Commit(uint16_t slot, const std::string& user, uint64_t seq, AppendResult result,
              absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done);

  const RedisStoreOptions options_;
  redis::Router* const router_;
  Clock* const clock_;
  const std::string verb_;    // PUBLISH, or SPUBLISH on a cluster
  const std::string legacy_;  // "1" on one Redis: scripts adopt an older pushd's keys
  absl::AnyInvocable<void(const redis_schema::CloseCommand&)> on_close_command_;

  absl::Mutex send_mu_ ABSL_ACQUIRED_BEFORE(batch_mu_);
  absl::Mutex batch_mu_;
  absl::flat_hash_map<int, Batch> batches_ ABSL_GUARDED_BY(batch_mu_);
  int64_t batches_in_flight_ ABSL_GUARDED_BY(batch_mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(batch_mu_) = false;
  std::thread flusher_;
};

}  // namespace push::store
