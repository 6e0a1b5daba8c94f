#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "common/base/clock.h"
#include "common/delivery/store.h"
#include "common/redis/redis_client.h"
#include "common/redis/redis_schema.h"

namespace push::store {

// The key layout and what goes through Redis between nodes: common/redis/redis_schema.h.
//
// Every operation is one Lua script: the append assigns the seq, stores, checks idempotency and
// publishes to the instances holding the user's connections atomically, so two nodes pushing to
// one user never produce a duplicate or missing seq, and a connection registered before the
// append always gets the publish.
struct RedisStoreOptions {
  uint32_t history_size = 1000;
};

class RedisStore final : public Store {
 public:
  // `connection` must outlive the store and have Scripts() among its scripts.
  RedisStore(RedisStoreOptions options, redis::Connection* connection,
             Clock* clock = Clock::Real());

  static std::vector<std::string> Scripts();

  void Append(AppendRequest request,
              absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done) override;
  void Read(ReadRequest request,
            absl::AnyInvocable<void(absl::StatusOr<ReadResult>)> done) override;
  void AdvanceCursor(std::string_view user_id, uint64_t seq) override;
  void Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) override;

  // What arrives on this instance's channel (the subscriber link, on its thread): a message the
  // append script of any node routed here goes to the sink, the hub; a close command that
  // DeleteClient on any node sent goes to the handler (the directory's).
  void OnChannelMessage(std::string_view payload);
  void SetCloseCommandHandler(absl::AnyInvocable<void(const redis_schema::CloseCommand&)> handler) {
    on_close_command_ = std::move(handler);
  }

 private:
  const RedisStoreOptions options_;
  redis::Connection* const connection_;
  Clock* const clock_;
  absl::AnyInvocable<void(const redis_schema::CloseCommand&)> on_close_command_;
};

}  // namespace push::store
