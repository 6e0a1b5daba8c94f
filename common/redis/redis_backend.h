#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "common/redis/redis_url.h"

namespace push {
class Hub;
class RedisDirectory;
namespace store {
class RedisStore;
}
namespace redis {
class Connection;
}

struct RedisBackendOptions {
  redis::Endpoint endpoint;
  std::string node_id;
  uint32_t history_size = 1000;
  // This process holds WebSocket connections (role edge or all): it subscribes to its instance's
  // channel and registers its connections' presence. An API-only process needs neither.
  bool edge = true;
  // Runs whenever a link goes up or down (on a Redis thread): readiness follows up().
  absl::AnyInvocable<void()> on_links_changed;
};

// --redis, wired: the commands link (every store and directory script), the subscriber link
// (this instance's channel, whose messages the store hands to the hub), the RedisStore (the
// broker) and the RedisDirectory (presence). Nothing here is on a push's path; it only connects
// the parts, so that App does not have to know how.
class RedisBackend {
 public:
  RedisBackend(RedisBackendOptions options, Hub* hub);
  ~RedisBackend();

  // Connects the links and waits up to `wait` for them. A Redis that is down does not fail the
  // start: the links keep retrying and up() stays false until they connect.
  void Start(absl::Duration wait);
  // Stops the links' threads (they call into the hub and the directory). Idempotent.
  void Stop();

  bool up() const { return links_up_.load() >= links_needed_; }
  store::RedisStore* store() const { return store_.get(); }
  RedisDirectory* directory() const { return directory_.get(); }
  const std::string& instance() const { return instance_; }

 private:
  void LinkChanged(int delta);

  RedisBackendOptions options_;
  const std::string instance_;
  std::atomic<int> links_up_{0};
  int links_needed_ = 1;
  std::unique_ptr<redis::Connection> commands_;
  std::unique_ptr<redis::Connection> subscriber_;
  std::unique_ptr<store::RedisStore> store_;
  std::unique_ptr<RedisDirectory> directory_;
};

}  // namespace push
