#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/delivery/directory.h"
#include "common/delivery/hub.h"
#include "common/redis/redis_schema.h"
#include "common/redis/router.h"
#include "common/redis/subscriber.h"

namespace push {

// Presence on Redis or a Redis Cluster: where every connection is, for routing, ListClients and
// DeleteClient (key layout in redis_schema.h).
//
// Routing is per user: while a user has a connection here, this instance is subscribed to the
// user's channel (Subscriber), which the append script publishes on; a push reaches only the
// instances holding the user's connections, with no per-push look-up. The count of the user's
// connections (pushd:{user}:c, one slot with the stream) gives the append its `delivered`.
//
// Presence: every connection is registered under its instance (pushd:{inst}:ic, info; :ix, the
// sorted index ListClients pages through) and its user (pushd:{user}:c) when the hub adds it.
// Each instance renews its lease in pushd:leases every 5 s (15 s long). ListClients reads only
// instances whose lease runs, so a node killed without goodbye leaves it within 15 s; a live
// node then removes the dead instance's entries (one at a time, claimed with pushd:{inst}:gc).
//
// ListClients costs the page times the number of instances: each instance's index is read from
// the page token on (ZRANGEBYLEX ... LIMIT), the pages merged, `total` summed from ZCARD.
//
// After a lost link, the node registers its connections again and every connection reads the
// store from its last delivered seq; every (re)confirmed subscription does the same for its
// user, so nothing published while a channel was not subscribed is lost.
class RedisDirectory final : public Directory, public HubObserver {
 public:
  // `instance` is unique per process lifetime (node_id plus a random suffix), so entries of an
  // earlier life of the same node are never mistaken for live ones. `subscriber` is null on an
  // API-only node (it registers nothing).
  RedisDirectory(std::string node_id, std::string instance, redis::Router* router,
                 redis::Subscriber* subscriber, Hub* hub);

  static std::vector<std::string> Scripts();
  static std::string MakeInstance(std::string_view node_id);

  // Directory:
  void List(ListRequest request,
            absl::AnyInvocable<void(absl::StatusOr<ClientPage>)> done) override;
  void Close(std::string user_id, std::string connection_id, uint16_t code, std::string reason,
             absl::AnyInvocable<void(absl::StatusOr<uint32_t>)> done) override;

  // HubObserver:
  void OnAdd(const Connection& connection) override;
  void OnRemove(const Connection& connection, std::string_view reason) override;

  // Wiring (called on Redis threads). A close command from a user's channel (routed messages go
  // to the store: RedisStore::OnChannelMessage).
  void OnCloseCommand(const redis_schema::CloseCommand& command);
  // The commands' link (one Redis) or every shard (a cluster) is up again.
  void OnCommandsUp();
  // A user's channel was (re)subscribed: its connections here read what they may have missed.
  void OnSubscribed(std::string_view channel);
  void OnTick();
  // Removes this instance's presence (graceful shutdown); waits at most `timeout`.
  void Goodbye(absl::Duration timeout);

 private:
  void Heartbeat();
  void Register(const Connection& connection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshStats();
  void ResyncAll();
  // The instances whose lease runs, and those whose lease ended (Redis's clock).
  void Instances(absl::AnyInvocable<void(
                     absl::StatusOr<std::pair<std::vector<std::string>, std::vector<std::string>>>)>
                     done);
  void CollectGarbage(const std::string& dead);
  void RemoveDeadEntries(const std::string& dead);
  void RemoveMembers(const std::string& instance, std::vector<std::string> members,
                     absl::AnyInvocable<void(bool)> done);
  void Tidy();
  std::string Info(const Connection& connection) const;

  const std::string node_id_;
  const std::string instance_;
  redis::Router* const router_;
  redis::Subscriber* const subscriber_;
  Hub* const hub_;
  std::atomic<int> ticks_{0};
  std::atomic<bool> gone_{false};  // Goodbye said
  // The local connections, with messages_sent + queued_bytes last written, so the periodic
  // refresh rewrites only connections whose figures moved.
  absl::Mutex mu_;
  absl::flat_hash_map<const Connection*, uint64_t> written_ ABSL_GUARDED_BY(mu_);
};

}  // namespace push
