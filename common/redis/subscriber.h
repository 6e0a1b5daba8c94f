#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/redis/cluster_client.h"
#include "common/redis/redis_client.h"

namespace push::redis {

struct SubscriberOptions {
  // One Redis (SUBSCRIBE) ...
  Endpoint endpoint;
  // ... or a Redis Cluster (SSUBSCRIBE on the primary serving each channel's slot): its map is
  // read from this client, which must outlive the subscriber.
  ClusterClient* cluster = nullptr;
  std::string name;  // for logs
  // On a link's thread; must not block. A published message.
  absl::AnyInvocable<void(std::string_view channel, std::string_view payload)> on_message;
  // A channel's subscription was confirmed (after Add, after a reconnect, after the channel's
  // slot moved): what was published on it before may have been missed, so its listeners read
  // the store again. On a link's thread; must not block.
  absl::AnyInvocable<void(std::string_view channel)> on_subscribed;
  // A link went up or down (readiness follows up()).
  absl::AnyInvocable<void()> on_links_changed;
};

// The channels this instance listens to (CONTRACT §7: a push goes only to the nodes holding the
// user's connections): one per user with a connection here, subscribed while the user has one.
// Redis needs a connection of its own for subscriptions: one Redis gets one link; a cluster a
// link per primary, each channel subscribed on the primary serving its slot and moved when the
// slot map changes (OnMapChanged) or when a node drops it (Redis unsubscribes the channels of a
// slot it no longer serves).
//
// Every subscription that is (re)confirmed is reported by on_subscribed, so no message published
// while a channel was not subscribed goes unnoticed: the listeners re-read the stream.
class Subscriber {
 public:
  explicit Subscriber(SubscriberOptions options);
  ~Subscriber();  // Stop()

  void Start();
  void Stop();

  // Counted: the channel is subscribed from the first Add to the matching last Remove.
  void Add(const std::string& channel);
  void Remove(const std::string& channel);
  // Cluster: the slot map changed; channels follow their slots.
  void OnMapChanged();

  // Every link is connected.
  bool up() const;
  // Channels wanted, and of those confirmed (tests, metrics).
  size_t channels() const;
  size_t confirmed() const;

 private:
  struct Link {
    std::string key;  // host:port
    std::shared_ptr<Connection> connection;
  };
  struct Channel {
    int refs = 0;
    std::string link;  // where it was last sent or confirmed; empty = nowhere
    bool confirmed = false;
    absl::Time sent;
  };

  std::shared_ptr<Connection> NewLink(const Endpoint& endpoint, const std::string& key);
  // The link a channel belongs on now; empty when none (no map, slot unassigned).
  std::string TargetOf(std::string_view channel) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Sends the subscription for `channels` (all of one slot on a cluster) on `link`.
  void SendSubscribe(const std::string& link, std::vector<std::string> channels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendUnsubscribe(const std::string& link, const std::string& channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Subscribes every wanted channel not confirmed on its target link (or sent there recently).
  void Reconcile(bool everything) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RebuildLinks() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnLinkConnected(const std::string& key);
  void OnLinkDisconnected(const std::string& key);
  void OnSubscription(const std::string& key, std::string_view verb, std::string_view channel);
  void OnTick();

  SubscriberOptions options_;
  const bool cluster_;
  const std::string subscribe_verb_;
  const std::string unsubscribe_verb_;
  // Set when something may need placing again (an error, a lost subscription).
  std::atomic<bool> dirty_{false};

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  SlotMap map_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Link> links_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Channel> channels_ ABSL_GUARDED_BY(mu_);
  // Links replaced by a map change, stopped outside the lock.
  std::vector<std::shared_ptr<Connection>> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace push::redis
