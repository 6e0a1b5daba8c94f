#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/redis/redis_url.h"

namespace push {
class Hub;
class RedisDirectory;
class RedisPresence;
namespace presence {
class Feed;
}
namespace store {
class RedisStore;
}
namespace redis {
class ClusterClient;
class Connection;
class Router;
class Subscriber;
}  // namespace redis

struct RedisBackendOptions {
  // --redis: one Redis ...
  redis::Endpoint endpoint;
  // ... or --redis_cluster: the seeds of a Redis Cluster (when not empty).
  std::vector<redis::Endpoint> cluster_seeds;
  std::string node_id;
  uint32_t history_size = 1000;
  // --device_ttl, --max_devices_per_user.
  absl::Duration device_ttl = absl::Hours(720);
  uint32_t max_devices_per_user = 32;
  // --redis_wait_replicas: a push is answered once this many replicas hold it.
  uint32_t wait_replicas = 0;
  // This process holds WebSocket connections (role edge or all): it subscribes to its users'
  // channels and registers its connections' presence. An API-only process needs neither.
  bool edge = true;
  // Presence (CONTRACT §6): the log lives in Redis (RedisPresence); an edge process reports its
  // connections, and every process sweeps. `feed`: the one this process's WatchPresence streams
  // read (a process that serves gRPC), kept current by a tail on a link of its own; null = none.
  bool presence = false;
  presence::Feed* feed = nullptr;
  absl::Duration presence_offline_delay = absl::Seconds(5);
  absl::Duration presence_retention = absl::Hours(1);
  // Runs whenever a link goes up or down (on a Redis thread): readiness follows up().
  absl::AnyInvocable<void()> on_links_changed;
};

// --redis or --redis_cluster, wired: the commands' router (one connection, or a ClusterClient
// with a connection per primary) that runs every store and directory script, the Subscriber
// (the users' channels, whose messages the store hands to the hub), the RedisStore (the broker)
// and the RedisDirectory (presence). Nothing here is on a push's path; it only connects the
// parts, so that App does not have to know how.
class RedisBackend {
 public:
  RedisBackend(RedisBackendOptions options, Hub* hub);
  ~RedisBackend();

  // Connects and waits up to `wait` for the links. A Redis that is down does not fail the start:
  // the links keep retrying and up() stays false until they connect. FAILED_PRECONDITION when a
  // --redis_cluster seed answers that it is not in cluster mode.
  absl::Status Start(absl::Duration wait);
  // Stops the links' threads (they call into the hub and the directory). Idempotent.
  void Stop();

  bool up() const;
  store::RedisStore* store() const { return store_.get(); }
  RedisDirectory* directory() const { return directory_.get(); }
  // Null without a feed.
  RedisPresence* presence() const { return presence_.get(); }
  // Graceful shutdown, before Stop(): waits up to `timeout` until the batched cursor moves and
  // this process's presence reports (the drain's DISCONNECTED "shutdown") are in Redis. True
  // when they are.
  bool Flush(absl::Duration timeout);
  const std::string& instance() const { return instance_; }

 private:
  void LinksChanged();
  void TickLoop();

  RedisBackendOptions options_;
  const std::string instance_;
  std::unique_ptr<redis::Connection> commands_;
  std::unique_ptr<redis::ClusterClient> cluster_;
  // --redis_wait_replicas: the appends' own connection(s), so that their WAITs never hold up
  // reads, cursors and presence on the commands' connection(s).
  std::unique_ptr<redis::Connection> durable_;
  std::unique_ptr<redis::ClusterClient> durable_cluster_;
  std::unique_ptr<redis::Router> router_;
  std::unique_ptr<redis::Subscriber> subscriber_;
  std::unique_ptr<store::RedisStore> store_;
  std::unique_ptr<RedisDirectory> directory_;
  // Presence: the tail's own link (a blocking XREAD must not hold up commands), and the log.
  std::unique_ptr<redis::Connection> tail_;
  std::unique_ptr<redis::ClusterClient> tail_cluster_;
  std::unique_ptr<redis::Router> tail_router_;
  std::unique_ptr<RedisPresence> presence_;

  absl::Mutex tick_mu_;
  bool stop_ticking_ ABSL_GUARDED_BY(tick_mu_) = false;
  std::thread ticker_;
};

}  // namespace push
