#include "common/delivery/presence.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/metrics.h"

namespace push::presence {

std::string PresenceState::Key(std::string_view node, std::string_view connection_id) {
  return absl::StrCat(ToAbsl(node), "\n", ToAbsl(connection_id));
}

void PresenceState::Connected(std::string_view node, const ConnectionInfo& c, absl::Time now,
                              std::vector<Event>* out) {
  auto [it, fresh] = connections_.try_emplace(Key(node, c.connection_id));
  if (!fresh) return;
  it->second = Open{c.user_id, c.device_id};
  Event e;
  e.kind = Kind::kConnected;
  e.user_id = c.user_id;
  e.connection_id = c.connection_id;
  e.device_id = c.device_id;
  e.node_id = std::string(node);
  e.at = now;
  out->push_back(e);
  auto [user, first] = users_.try_emplace(c.user_id);
  ++user->second.connections;
  user->second.leaving_since = absl::InfiniteFuture();  // its due_ entry is skipped
  if (first) {
    e.kind = Kind::kOnline;
    e.connection_id.clear();
    e.device_id.clear();
    out->push_back(std::move(e));
  }
}

void PresenceState::Disconnected(std::string_view node, std::string_view connection_id,
                                 std::string_view reason, absl::Time now, std::vector<Event>* out) {
  auto it = connections_.find(Key(node, connection_id));
  if (it == connections_.end()) return;
  Event e;
  e.kind = Kind::kDisconnected;
  e.user_id = std::move(it->second.user_id);
  e.connection_id = std::string(connection_id);
  e.device_id = std::move(it->second.device_id);
  e.node_id = std::string(node);
  e.reason = std::string(reason);
  e.at = now;
  connections_.erase(it);
  auto user = users_.find(e.user_id);
  if (user != users_.end() && user->second.connections > 0 && --user->second.connections == 0) {
    user->second.leaving_since = now;
    user->second.last_node = std::string(node);
    due_.emplace(now + offline_delay_, e.user_id);
  }
  out->push_back(std::move(e));
}

void PresenceState::NodeLost(std::string_view node, absl::Time now, std::vector<Event>* out) {
  std::vector<std::string> ids;
  const std::string prefix = absl::StrCat(ToAbsl(node), "\n");
  for (const auto& [key, open] : connections_) {
    if (key.size() > prefix.size() && key.compare(0, prefix.size(), prefix) == 0) {
      ids.push_back(key.substr(prefix.size()));
    }
  }
  std::sort(ids.begin(), ids.end());  // a stable order for the same state
  for (const std::string& id : ids) Disconnected(node, id, kNodeLost, now, out);
}

void PresenceState::Expire(absl::Time now, std::vector<Event>* out) {
  while (!due_.empty() && due_.begin()->first <= now) {
    auto entry = due_.begin();
    std::string user_id = std::move(entry->second);
    absl::Time due = entry->first;
    due_.erase(entry);
    auto user = users_.find(user_id);
    // Reconnected meanwhile (and maybe left again: a later entry is the one that counts).
    if (user == users_.end() || user->second.connections > 0 ||
        user->second.leaving_since + offline_delay_ != due) {
      continue;
    }
    Event e;
    e.kind = Kind::kOffline;
    e.user_id = std::move(user_id);
    e.node_id = std::move(user->second.last_node);
    e.at = now;
    users_.erase(user);
    out->push_back(std::move(e));
  }
}

absl::Time PresenceState::NextDue() const {
  return due_.empty() ? absl::InfiniteFuture() : due_.begin()->first;
}

void Feed::Publish(std::vector<Event> events) {
  if (events.empty()) return;
  absl::MutexLock lock(&mu_);
  if (events.front().cursor != last_ + 1) events_.clear();  // starts over
  for (Event& e : events) events_.push_back(std::move(e));
  last_ = events_.back().cursor;
  while (events_.size() > options_.capacity) events_.pop_front();
  const uint64_t last = last_;
  WakeLocked([last](uint64_t after) { return after < last; });
}

void Feed::Reset(uint64_t last) {
  absl::MutexLock lock(&mu_);
  if (last == last_) return;
  events_.clear();
  last_ = last;
  WakeLocked([](uint64_t) { return true; });
}

template <class Due>
void Feed::WakeLocked(Due due) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (due(it->second)) {
      it->first->Wake();
      waiters_.erase(it++);
    } else {
      ++it;
    }
  }
}

void Feed::TrimLocked(absl::Time now) {
  while (!events_.empty() && events_.front().at + options_.retention < now) events_.pop_front();
}

void Feed::Trim() {
  absl::MutexLock lock(&mu_);
  TrimLocked(options_.clock->Now());
}

Feed::Read Feed::Take(uint64_t after, size_t max, std::vector<Event>* out) const {
  absl::MutexLock lock(&mu_);
  if (after > last_) return Read::kAhead;
  if (after == last_) return Read::kOk;
  const uint64_t first = events_.empty() ? last_ + 1 : events_.front().cursor;
  if (after + 1 < first) return Read::kBefore;
  for (size_t i = after + 1 - first; i < events_.size() && max > 0; ++i, --max) {
    out->push_back(events_[i]);
  }
  return Read::kOk;
}

uint64_t Feed::last() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

uint64_t Feed::first() const {
  absl::MutexLock lock(&mu_);
  return events_.empty() ? last_ + 1 : events_.front().cursor;
}

bool Feed::Wait(Waiter* waiter, uint64_t after) {
  absl::MutexLock lock(&mu_);
  if (after < last_) return false;
  waiters_[waiter] = after;
  return true;
}

void Feed::Cancel(Waiter* waiter) {
  absl::MutexLock lock(&mu_);
  waiters_.erase(waiter);
}

void Feed::WakeAll() {
  absl::MutexLock lock(&mu_);
  WakeLocked([](uint64_t) { return true; });
}

MemoryPresence::MemoryPresence(std::string node_id, absl::Duration offline_delay, Feed* feed,
                               Clock* clock)
    : node_id_(std::move(node_id)), feed_(feed), clock_(clock), state_(offline_delay) {}

void MemoryPresence::Emit(std::vector<Event> events) {
  if (events.empty()) return;
  for (Event& e : events) e.cursor = ++cursor_;
  GlobalMetrics().presence_events.fetch_add(events.size(), std::memory_order_relaxed);
  feed_->Publish(std::move(events));
}

void MemoryPresence::OnAdd(const Connection& connection) {
  std::vector<Event> events;
  absl::MutexLock lock(&mu_);
  state_.Connected(node_id_, connection.info(), clock_->Now(), &events);
  Emit(std::move(events));
}

void MemoryPresence::OnRemove(const Connection& connection, std::string_view reason) {
  std::vector<Event> events;
  absl::MutexLock lock(&mu_);
  state_.Disconnected(node_id_, connection.info().connection_id, reason, clock_->Now(), &events);
  Emit(std::move(events));
}

void MemoryPresence::Tick() {
  {
    std::vector<Event> events;
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_->Now();
    if (state_.NextDue() <= now) {
      state_.Expire(now, &events);
      Emit(std::move(events));
    }
  }
  feed_->Trim();
}

void MemoryPresence::ReadLog(uint64_t after, size_t,
                             absl::AnyInvocable<void(absl::StatusOr<Page>)> done) {
  // The feed is the whole log: what it no longer holds is gone.
  Page page;
  page.resync = true;
  page.resync_from = feed_->first() - 1;
  if (after > feed_->last()) page.resync_from = feed_->last();
  done(std::move(page));
}

}  // namespace push::presence
