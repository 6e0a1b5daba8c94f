#pragma once

#include <string>
#include <vector>

#include "common/clock.h"
#include "common/redis_client.h"
#include "common/store.h"

namespace push::store {

// Key layout shared by the Redis store and the Redis directory (all under "pushd:"):
//   s:<user>   stream of messages, entry ids 0-<seq>, fields i (id) t (ts ms) e (expiry ms) d
//   m:<user>   hash: seq (last assigned), cur (delivered cursor); never expires
//   i:<user>   hash: message_id -> seq (idempotency keys)
//   c:<user>   hash: "<instance>\n<connection_id>" -> "" (where the user's connections are)
//   ic:<inst>  hash: "<user>\n<connection_id>" -> client info (ListClients)
//   a:<inst>   string with a short ttl: the instance is alive (heartbeat)
//   nodes      set of instances
//   channel ch:<inst>: messages and close commands for the connections of one instance.
//
// Why a Redis Stream per user: entries are ordered by their id, so with explicit ids 0-<seq> a
// replay is one XRANGE from (0-<since>, XADD MAXLEN trims to --history_size in the same call,
// and small streams are stored compactly (listpacks). The seq counter lives in m:<user> so it
// survives a purge (numbering continues, like the memory store).
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

 private:
  const RedisStoreOptions options_;
  redis::Connection* const connection_;
  Clock* const clock_;
};

}  // namespace push::store
