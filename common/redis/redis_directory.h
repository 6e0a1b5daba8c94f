#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/delivery/directory.h"
#include "common/delivery/hub.h"
#include "common/redis/redis_client.h"
#include "common/redis/redis_schema.h"

namespace push {

// Presence on Redis: where every connection is, for ListClients and DeleteClient (key layout in
// redis_schema.h). Routing is the store's (RedisStore publishes, the subscriber's routed messages
// reach the hub through it); this registry is what the append script routes by.
//
// Routing is per node, not per user: each process subscribes to one channel of its own
// (ch:<instance>), and the append script publishes a message only to the instances that hold
// the user's connections (c:<user>). Per-user channels would cost a SUBSCRIBE/UNSUBSCRIBE round
// trip per connect and disconnect and tens of thousands of channels per node; per node, a node
// receives exactly the messages it has connections for, and the subscription never changes, so
// a reconnect resubscribes with one command.
//
// Presence: every connection is registered in ic:<instance> and c:<user> when the hub adds it;
// a heartbeat keeps a:<instance> alive (15 s ttl, refreshed every 5 s). A node killed without
// goodbye stops refreshing it: it leaves ListClients within 15 s and its entries are cleaned up
// lazily by the scripts that come across them.
//
// After a lost Redis link, the node registers its connections again and every connection reads
// the store from its last delivered seq, so nothing published during the outage is lost.
class RedisDirectory final : public Directory, public HubObserver {
 public:
  // `instance` is unique per process lifetime (node_id plus a random suffix), so entries of an
  // earlier life of the same node are never mistaken for live ones.
  RedisDirectory(std::string node_id, std::string instance, redis::Connection* commands, Hub* hub);

  static std::vector<std::string> Scripts();
  static std::string MakeInstance(std::string_view node_id);
  std::string channel() const { return redis_schema::Channel(instance_); }

  // Directory:
  void List(std::optional<std::string> user_id,
            absl::AnyInvocable<void(absl::StatusOr<std::vector<ClientRecord>>)> done) override;
  void Close(std::string user_id, std::string connection_id, uint16_t code, std::string reason,
             absl::AnyInvocable<void(absl::StatusOr<uint32_t>)> done) override;

  // HubObserver:
  void OnAdd(const Connection& connection) override;
  void OnRemove(const Connection& connection) override;

  // Wiring (called on the connections' threads). A close command from the instance's channel
  // (routed messages go to the store: RedisStore::OnChannelMessage).
  void OnCloseCommand(const redis_schema::CloseCommand& command);
  void OnCommandsConnected();
  void OnSubscriberConnected();
  void OnTick();
  // Removes this instance's presence (graceful shutdown); waits at most `timeout`.
  void Goodbye(absl::Duration timeout);

 private:
  void Heartbeat();
  void Register(const Connection& connection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshStats();
  void ResyncAll();
  std::string Info(const Connection& connection) const;

  const std::string node_id_;
  const std::string instance_;
  redis::Connection* const commands_;
  Hub* const hub_;
  int ticks_ = 0;
  std::atomic<bool> gone_{false};  // Goodbye said
  // The local connections, with messages_sent + queued_bytes last written, so the periodic
  // refresh rewrites only connections whose figures moved.
  absl::Mutex mu_;
  absl::flat_hash_map<const Connection*, uint64_t> written_ ABSL_GUARDED_BY(mu_);
};

}  // namespace push
