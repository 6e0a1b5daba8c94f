#include "common/redis/subscriber.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/strings.h"
#include "common/redis/cluster_slots.h"
#include "spdlog/spdlog.h"

namespace push::redis {
namespace {

std::string Key(const Endpoint& e) { return absl::StrCat(e.host, ":", e.port); }

// A subscription not confirmed this long after it was sent is sent again (its reply was an
// error, or the link dropped it).
constexpr absl::Duration kResendAfter = absl::Seconds(3);
constexpr size_t kChannelsPerCommand = 256;

bool IsSubscribe(std::string_view verb) { return verb == "subscribe" || verb == "ssubscribe"; }

}  // namespace

Subscriber::Subscriber(SubscriberOptions options)
    : options_(std::move(options)),
      cluster_(options_.cluster != nullptr),
      subscribe_verb_(cluster_ ? "SSUBSCRIBE" : "SUBSCRIBE"),
      unsubscribe_verb_(cluster_ ? "SUNSUBSCRIBE" : "UNSUBSCRIBE") {}

Subscriber::~Subscriber() { Stop(); }

std::shared_ptr<Connection> Subscriber::NewLink(const Endpoint& endpoint, const std::string& key) {
  ConnectionOptions o;
  o.endpoint = endpoint;
  if (cluster_) {
    o.endpoint.db = 0;
    o.endpoint.user = options_.endpoint.user;  // a map's node: the credentials given for all
    o.endpoint.password = options_.endpoint.password;
  }
  o.name = absl::StrCat(options_.name, " ", key);
  o.subscriber = true;
  o.error_replies_as_values = true;  // a MOVED is ours to handle
  o.on_message = [this](std::string_view channel, std::string_view payload) {
    if (options_.on_message) options_.on_message(channel, payload);
  };
  o.on_subscription = [this, key](std::string_view verb, std::string_view channel) {
    OnSubscription(key, verb, channel);
  };
  o.on_connect = [this, key] { OnLinkConnected(key); };
  o.on_disconnect = [this, key] { OnLinkDisconnected(key); };
  o.on_tick = [this] { OnTick(); };
  return std::make_shared<Connection>(std::move(o));
}

void Subscriber::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
  if (cluster_) {
    // Read under the lock (as OnMapChanged does), so a map change racing the start is never
    // overwritten by the older map.
    map_ = options_.cluster->slot_map();
    RebuildLinks();
  } else {
    std::string key = Key(options_.endpoint);
    auto connection = NewLink(options_.endpoint, key);
    links_[key] = Link{key, connection};
    connection->Start();
  }
}

void Subscriber::Stop() {
  std::vector<std::shared_ptr<Connection>> stopping;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [key, link] : links_) stopping.push_back(link.connection);
    for (auto& c : retired_) stopping.push_back(c);
    retired_.clear();
  }
  // Outside the lock: the links' threads call back into this object until they end.
  for (auto& c : stopping) c->Stop();
}

void Subscriber::OnMapChanged() {
  std::vector<std::shared_ptr<Connection>> retired;
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopped_) return;
    map_ = options_.cluster->slot_map();
    RebuildLinks();
    retired.swap(retired_);
  }
  for (auto& c : retired) c->Stop();
  if (options_.on_links_changed) options_.on_links_changed();
}

void Subscriber::RebuildLinks() {
  absl::flat_hash_map<std::string, Endpoint> primaries;
  for (const Shard& shard : map_.shards()) primaries[Key(shard.primary)] = shard.primary;
  for (auto it = links_.begin(); it != links_.end();) {
    if (primaries.contains(it->first)) {
      ++it;
      continue;
    }
    retired_.push_back(it->second.connection);
    for (auto& [name, channel] : channels_) {
      if (channel.link == it->first) {
        channel.link.clear();
        channel.confirmed = false;
      }
    }
    links_.erase(it++);
  }
  for (const auto& [key, endpoint] : primaries) {
    if (links_.contains(key)) continue;
    auto connection = NewLink(endpoint, key);
    links_[key] = Link{key, connection};
    connection->Start();
  }
  Reconcile(false);
}

std::string Subscriber::TargetOf(std::string_view channel) const {
  if (!cluster_) return links_.empty() ? std::string() : links_.begin()->first;
  int shard = map_.ShardIndex(KeySlot(channel));
  if (shard < 0) return {};
  return Key(map_.shards()[shard].primary);
}

void Subscriber::SendSubscribe(const std::string& link, std::vector<std::string> channels) {
  auto it = links_.find(link);
  if (it == links_.end() || channels.empty()) return;
  spdlog::debug("redis {} {}: {} {} channels, the first {}", options_.name, link, subscribe_verb_,
                channels.size(), channels.front());
  std::vector<std::string> argv;
  argv.reserve(channels.size() + 1);
  argv.push_back(subscribe_verb_);
  for (std::string& c : channels) argv.push_back(std::move(c));
  // The callback may run inline (a link that just went down refuses at once): no lock here.
  it->second.connection->Command(std::move(argv), [this](absl::StatusOr<Value> v) {
    if (v.ok() && v->type != Value::Type::kError) return;
    spdlog::debug("redis subscriber: subscription refused: {}",
                  v.ok() ? v->str : std::string(v.status().message()));
    dirty_.store(true);
    if (cluster_ && v.ok()) {
      // MOVED (the map we placed it by is old) or CLUSTERDOWN: read the map again.
      options_.cluster->RequestRefresh();
    }
  });
}

void Subscriber::SendUnsubscribe(const std::string& link, const std::string& channel) {
  auto it = links_.find(link);
  if (it == links_.end() || !it->second.connection->connected()) return;
  it->second.connection->Command({unsubscribe_verb_, channel}, [](absl::StatusOr<Value>) {});
}

void Subscriber::Add(const std::string& channel) {
  absl::MutexLock lock(&mu_);
  Channel& c = channels_[channel];
  if (++c.refs > 1 || !started_ || stopped_) return;
  std::string target = TargetOf(channel);
  if (target.empty()) {
    dirty_.store(true);
    return;
  }
  auto link = links_.find(target);
  if (link == links_.end() || !link->second.connection->connected()) return;  // on connect
  c.link = target;
  c.confirmed = false;
  c.sent = absl::Now();
  SendSubscribe(target, {channel});
}

void Subscriber::Remove(const std::string& channel) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(channel);
  if (it == channels_.end() || --it->second.refs > 0) return;
  if (!it->second.link.empty() && !stopped_) SendUnsubscribe(it->second.link, channel);
  channels_.erase(it);
}

void Subscriber::Reconcile(bool everything) {
  absl::Time now = absl::Now();
  // (link, slot) -> channels, so that one command carries channels of one slot only.
  absl::flat_hash_map<std::pair<std::string, uint16_t>, std::vector<std::string>> sends;
  bool pending = false;
  for (auto& [name, c] : channels_) {
    std::string target = TargetOf(name);
    if (target.empty()) {
      pending = true;
      continue;
    }
    auto link = links_.find(target);
    if (link == links_.end() || !link->second.connection->connected()) {
      // It goes out when that link connects.
      if (c.link != target) {
        c.link.clear();
        c.confirmed = false;
      }
      continue;
    }
    if (!everything && c.link == target && (c.confirmed || now - c.sent < kResendAfter)) {
      pending |= !c.confirmed;
      continue;
    }
    if (!c.link.empty() && c.link != target) SendUnsubscribe(c.link, name);
    c.link = target;
    c.confirmed = false;
    c.sent = now;
    pending = true;
    uint16_t slot = cluster_ ? KeySlot(name) : 0;
    auto& group = sends[{target, slot}];
    group.push_back(name);
    if (group.size() >= kChannelsPerCommand) {
      SendSubscribe(target, std::move(group));
      group.clear();
    }
  }
  for (auto& [where, group] : sends) SendSubscribe(where.first, std::move(group));
  if (pending) dirty_.store(true);
}

void Subscriber::OnLinkConnected(const std::string& key) {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    // Subscriptions do not survive a reconnect: every channel of this link is sent again.
    for (auto& [name, c] : channels_) {
      if (c.link == key) {
        c.link.clear();
        c.confirmed = false;
      }
    }
    Reconcile(false);
  }
  if (options_.on_links_changed) options_.on_links_changed();
}

void Subscriber::OnLinkDisconnected(const std::string& key) {
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, c] : channels_) {
      if (c.link == key) {
        c.link.clear();
        c.confirmed = false;
      }
    }
  }
  if (cluster_) options_.cluster->RequestRefresh();  // maybe a failover
  if (options_.on_links_changed) options_.on_links_changed();
}

void Subscriber::OnSubscription(const std::string& key, std::string_view verb,
                                std::string_view channel) {
  spdlog::debug("redis {} {}: {} {}", options_.name, key, verb, channel);
  bool report = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    auto it = channels_.find(ToAbsl(channel));
    if (it == channels_.end() || it->second.link != key) return;
    if (IsSubscribe(verb)) {
      report = !it->second.confirmed;
      it->second.confirmed = true;
    } else {
      // Redis dropped a channel we still want (its slot went to another node), or this is the
      // late confirmation of an unsubscribe sent before the channel was wanted again: either
      // way it is sent again where it belongs now.
      it->second.link.clear();
      it->second.confirmed = false;
      // At once: a node that still serves the slot (Redis 7.0 also drops a slot's subscribers
      // for a moment on the node that just took it) takes the subscription again; one that
      // does not answers MOVED, and the map refresh that asks for places it.
      Reconcile(false);
    }
  }
  if (!report) return;
  if (options_.on_subscribed) options_.on_subscribed(channel);
}

void Subscriber::OnTick() {
  if (!dirty_.exchange(false)) return;
  absl::MutexLock lock(&mu_);
  if (stopped_) return;
  Reconcile(false);
}

bool Subscriber::up() const {
  absl::ReaderMutexLock lock(&mu_);
  if (!started_ || links_.empty()) return false;
  for (const auto& [key, link] : links_) {
    if (!link.connection->connected()) return false;
  }
  return true;
}

size_t Subscriber::channels() const {
  absl::ReaderMutexLock lock(&mu_);
  return channels_.size();
}

size_t Subscriber::confirmed() const {
  absl::ReaderMutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [name, c] : channels_) n += c.confirmed ? 1 : 0;
  return n;
}

}  // namespace push::redis
