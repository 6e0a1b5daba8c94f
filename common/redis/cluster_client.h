#pragma once

// A Redis Cluster command client (CONTRACT §7): a redis::Connection per primary, commands routed
// by hash slot, MOVED/ASK followed, the slot map refreshed when it changes, and a failed-over
// shard found again without a restart.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/log_throttle.h"
#include "common/redis/cluster_slots.h"
#include "common/redis/redis_client.h"
#include "common/redis/redis_url.h"

namespace push::redis {

struct ClusterOptions {
  // Where to ask for the slot map first (ParseSeeds). Later refreshes also ask every node the
  // last map named, primaries and replicas, so the seeds may all be gone after a failover.
  std::vector<Endpoint> seeds;
  // AUTH on every node (Endpoint::user and password), whichever the map names.
  std::string user;
  std::string password;
  std::string name;  // for logs
  // Loaded on every shard connection after each connect, as ConnectionOptions::scripts.
  std::vector<std::string> scripts;
  // How long a command may be retried (CLUSTERDOWN, TRYAGAIN, LOADING, a shard being down)
  // before it fails UNAVAILABLE. It is also each shard connection's no-answer timeout, so a
  // command sent just before its deadline to a node that hangs may take up to twice this; a
  // node that dies (connection reset) fails it at once.
  absl::Duration command_timeout = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(1);
  // Retries wait from min to max backoff, doubling: short, because the common cause is the
  // ~1 s CLUSTERDOWN window of a failover elsewhere in the cluster.
  absl::Duration retry_min_backoff = absl::Milliseconds(10);
  absl::Duration retry_max_backoff = absl::Milliseconds(200);
  // MOVED and ASK answers one command may follow before it fails (a cluster that redirects in
  // a circle must not keep a command bouncing until its timeout).
  int max_redirects = 5;
  // The map is read again this often while every shard is up (a reshard that no command of
  // ours ran into yet), and every down_refresh_interval while one is not (to find the replica
  // that took over); never more than one read at a time, nor closer than min_refresh_gap.
  absl::Duration refresh_interval = absl::Seconds(10);
  absl::Duration down_refresh_interval = absl::Milliseconds(250);
  absl::Duration min_refresh_gap = absl::Milliseconds(100);
  // Durable(): ConnectionOptions::wait_replicas and wait_timeout of every shard connection.
  int wait_replicas = 0;
  absl::Duration wait_timeout = absl::Seconds(1);
  // Called on the client's manager thread, never two at once, in order; they may call
  // Command() but must not block or call Stop().
  // Every slot has a primary and every primary's connection is up (true) or not (false).
  absl::AnyInvocable<void(bool up)> on_up_changed;
  // A refresh installed a map that sends some slot to another primary than before (not called
  // for the map Start() found): callers resubscribe or resync what lives on the moved slots.
  absl::AnyInvocable<void()> on_map_changed;
};

// Sends each command to the primary serving its hash slot, without blocking the caller: every
// shard has a redis::Connection (its own thread, pipelined), plus one timer thread for retries
// and one manager thread that reads the slot map (blocking hiredis I/O, on that thread only).
// Callbacks run on a connection's thread, on the timer thread, or inline when a command fails
// at once, and must not block.
//
// What a command goes through (Command()):
//   MOVED      the map is refreshed (one refresh at a time; requests made meanwhile become one
//              more) and the command goes at once to the node the redirect names.
//   ASK        ASKING and the command go to the named node back to back, once; the map stays.
//   TRYAGAIN, CLUSTERDOWN, LOADING, READONLY, MASTERDOWN, a shard connection down or refusing:
//              Redis did not run the command, so it is retried with backoff until its timeout,
//              then fails UNAVAILABLE naming the slot and the last error. CLUSTERDOWN and
//              READONLY ask for a refresh (a failover may be under way); a shard's disconnect
//              does too, and while a shard is down the map is read every
//              down_refresh_interval until its new primary shows up.
//   a shard connection's queue full (Overloaded): UNAVAILABLE at once, as with one Redis.
//   connection lost after the command was written: it fails UNAVAILABLE and is NOT resent,
//              because Redis may have run it and pushd's appends are idempotent only when the
//              caller gave a message id; the caller, who knows, may retry.
//   any other error reply: INTERNAL "Redis error: ...", as redis::Connection reports it.
class ClusterClient {
 public:
  explicit ClusterClient(ClusterOptions options);
  ~ClusterClient();  // Stop()
  ClusterClient(const ClusterClient&) = delete;
  ClusterClient& operator=(const ClusterClient&) = delete;

  // Reads the slot map from the first seed that answers CLUSTER SLOTS and opens a connection
  // to every primary, waiting up to connect_timeout for them. Blocks for about connect_timeout
  // per unreachable seed. OK; or UNAVAILABLE when no seed answered, and the client keeps
  // looking in the background (commands retry until their timeout, on_up_changed(true) tells
  // when it is up); or FAILED_PRECONDITION when a seed is not in cluster mode, and nothing is
  // started. Call once.
  absl::Status Start();
  // Fails every command waiting or in flight (UNAVAILABLE) and joins every thread. Idempotent;
  // not from a callback or hook.
  void Stop();

  // The command on the primary serving `slot` (KeySlot of its key(s); every key of a command
  // must share it). `done` runs exactly once.
  void Command(uint16_t slot, std::vector<std::string> argv, Callback done);
  // The command on every primary (cluster-wide totals): one result per shard, in the order of
  // the map's shards() when called, each retried like Command(). An empty vector when there is
  // no map yet.
  // As Command(), answered after wait_replicas replicas of the primary that ran it acknowledged
  // it (Connection::Durable); a shortfall fails it UNAVAILABLE (ReplicasShort) and is not retried.
  void Durable(uint16_t slot, std::vector<std::string> argv, Callback done);
  // Asks the manager to read the slot map again soon (coalesced): a subscriber told MOVED.
  void RequestRefresh();
  void CommandAll(std::vector<std::string> argv,
                  absl::AnyInvocable<void(std::vector<absl::StatusOr<Value>>)> done);

  static uint16_t SlotOf(std::string_view key) { return KeySlot(key); }

  // Every slot has a primary whose connection is up (on_up_changed's last value).
  bool up() const { return up_.load(std::memory_order_acquire); }
  // The map in use (empty before the first one), and how many maps were installed.
  SlotMap slot_map() const;
  // The index of the shard serving `slot` in the map in use (slot_map().ShardIndex), or -1.
  int ShardOf(uint16_t slot) const;
  int64_t map_generation() const;

 private:
  struct Op;
  // One installed map and the connections it routes to; replaced whole, never changed.
  struct Routing {
    SlotMap map;
    int64_t generation = 0;
    std::vector<std::string> shard_keys;  // "host:port" of each shard's primary
    std::vector<std::shared_ptr<Connection>> shard_conns;
    std::vector<uint16_t> first_slot;  // a slot each shard serves, for CommandAll
    absl::flat_hash_map<std::string, std::shared_ptr<Connection>> by_key;
  };

  void Submit(uint16_t slot, std::vector<std::string> argv, Callback done, bool durable);
  void Dispatch(std::unique_ptr<Op> op);
  void Send(std::unique_ptr<Op> op, std::shared_ptr<Connection> conn, Endpoint to, bool asking);
  void OnReply(std::unique_ptr<Op> op, const Endpoint& sent_to, absl::StatusOr<Value> result);
  // Retries `op` after its backoff, or fails it if that would pass its deadline.
  void Retry(std::unique_ptr<Op> op, std::string why, bool refresh);
  void Fail(std::unique_ptr<Op> op, absl::Status status);
  void MarkUpDirty();

  std::shared_ptr<const Routing> routing() const;
  std::shared_ptr<Connection> NewConnection(const Endpoint& endpoint);
  // The map from the first of `candidates` that answers; FAILED_PRECONDITION as soon as one is
  // not in cluster mode.
  absl::StatusOr<SlotMap> ReadMap(const std::vector<Endpoint>& candidates);
  // Who to ask for the map: connected primaries first, then the other nodes of the last map,
  // then the seeds.
  std::vector<Endpoint> RefreshCandidates() const;
  // Installs `map`; connections of nodes no longer primaries are stopped. Whether some slot
  // moved to another primary.
  bool Install(SlotMap map);
  void TimerLoop();
  void ManagerLoop();
  void UpdateUp();

  ClusterOptions options_;  // the hooks are called, so not const
  std::atomic<bool> up_{false};
  // While no node answers, the map is read every down_refresh_interval: one line per 10 s.
  LogThrottle refresh_failures_{absl::Seconds(10)};
  std::thread timer_thread_;
  std::thread manager_thread_;

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const Routing> routing_ ABSL_GUARDED_BY(mu_);
  // Commands waiting for their next attempt, by when.
  std::multimap<absl::Time, std::unique_ptr<Op>> retries_ ABSL_GUARDED_BY(mu_);
  absl::CondVar timer_cv_;
  bool refresh_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool up_dirty_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar manager_cv_;
};

}  // namespace push::redis
