#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
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
struct RedisStoreOptions {
  uint32_t history_size = 1000;
  bool wait_replicas = false;
  DeviceLimits devices = {};  // --device_ttl, --max_devices_per_user
};

class RedisStore final : public Store {
 public:
  // `router` must outlive the store, and its connections have Scripts() among their scripts.
  RedisStore(RedisStoreOptions options, redis::Router* router, Clock* clock = Clock::Real());

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

  // What arrives on a user's channel (a subscriber link, on its thread): a message the append
  // script of any node published goes to the sink, the hub; a close command that DeleteClient on
  // any node sent goes to the handler (the directory's).
  void OnChannelMessage(std::string_view payload);
  void SetCloseCommandHandler(absl::AnyInvocable<void(const redis_schema::CloseCommand&)> handler) {
    on_close_command_ = std::move(handler);
  }

 private:
  // One cursor script run (fire and forget): `kind` as the script's progress argument.
  void Cursor(std::string_view user_id, std::string_view device_id, uint64_t seq, const char* kind);
  std::string DeviceTtlMs() const;
  void Commit(uint16_t slot, const std::string& user, uint64_t seq, AppendResult result,
              absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done);

  const RedisStoreOptions options_;
  redis::Router* const router_;
  Clock* const clock_;
  const std::string verb_;    // PUBLISH, or SPUBLISH on a cluster
  const std::string legacy_;  // "1" on one Redis: scripts adopt an older pushd's keys
  absl::AnyInvocable<void(const redis_schema::CloseCommand&)> on_close_command_;
};

}  // namespace push::store
