#include "common/delivery/hub.h"

#include <algorithm>

#include "absl/hash/hash.h"

namespace push {

Hub::Hub(int shards) {
  shards_.reserve(shards);
  for (int i = 0; i < shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

Hub::Shard& Hub::ShardFor(std::string_view user_id) {
  return *shards_[StringViewHash{}(user_id) % shards_.size()];
}

namespace {

// Gives back one slot of `user_id` in `reserved`.
template <typename Map>
void Unreserve(Map& reserved, std::string_view user_id) {
  auto it = reserved.find(user_id);
  if (it == reserved.end()) return;
  if (--it->second == 0) reserved.erase(it);
}

}  // namespace

void Hub::Add(std::shared_ptr<Connection> connection, bool reserved) {
  const Connection& c = *connection;
  {
    Shard& shard = ShardFor(c.info().user_id);
    absl::MutexLock lock(&shard.mu);
    // Under the same lock as the push_back, so the user's count never dips in between.
    if (reserved) Unreserve(shard.reserved, c.info().user_id);
    if (auto it = shard.users.find(std::string_view(c.info().user_id)); it != shard.users.end()) {
      it->list.push_back(std::move(connection));
    } else {
      UserEntry entry;
      entry.list.push_back(std::move(connection));
      shard.users.insert(std::move(entry));
    }
    size_.fetch_add(1, std::memory_order_relaxed);
  }
  for (HubObserver* observer : observers_) observer->OnAdd(c);
}

bool Hub::Reserve(std::string_view user_id, uint32_t limit) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  size_t open = 0;
  if (auto it = shard.users.find(user_id); it != shard.users.end()) open = it->list.size();
  auto held = shard.reserved.find(user_id);
  size_t pending = held == shard.reserved.end() ? 0 : held->second;
  if (open + pending >= limit) return false;
  if (held == shard.reserved.end()) {
    shard.reserved.emplace(std::string(user_id), 1);
  } else {
    ++held->second;
  }
  return true;
}

void Hub::Release(std::string_view user_id) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  Unreserve(shard.reserved, user_id);
}

void Hub::Remove(const Connection& connection, std::string_view reason) {
  Shard& shard = ShardFor(connection.info().user_id);
  absl::ReleasableMutexLock lock(&shard.mu);
  auto it = shard.users.find(std::string_view(connection.info().user_id));
  if (it == shard.users.end()) return;
  ConnectionList& list = it->list;
  auto pos =
      std::find_if(list.begin(), list.end(), [&](const auto& c) { return c.get() == &connection; });
  if (pos == list.end()) return;
  size_.fetch_sub(1, std::memory_order_relaxed);
  // The entry goes with its last connection (never left empty: its key is read from it).
  if (list.size() == 1) {
    shard.users.erase(it);
  } else {
    list.erase(pos);
  }
  if (!observers_.empty()) {
    lock.Release();
    for (HubObserver* observer : observers_) observer->OnRemove(connection, reason);
  }
}

uint32_t Hub::Publish(std::string_view user_id, const MessagePtr& message) {
  ConnectionList targets;
  {
    Shard& shard = ShardFor(user_id);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.users.find(user_id);
    if (it == shard.users.end()) return 0;
    targets = it->list;
  }
  for (const auto& c : targets) c->Deliver(message);
  return static_cast<uint32_t>(targets.size());
}

std::vector<std::shared_ptr<Connection>> Hub::Find(std::string_view user_id,
                                                   std::string_view connection_id) {
  std::vector<std::shared_ptr<Connection>> out;
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.users.find(user_id);
  if (it == shard.users.end()) return out;
  for (const auto& c : it->list) {
    if (connection_id.empty() || c->info().connection_id == connection_id) out.push_back(c);
  }
  return out;
}

std::vector<std::shared_ptr<Connection>> Hub::All() {
  std::vector<std::shared_ptr<Connection>> out;
  for (auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    for (const UserEntry& e : shard->users) out.insert(out.end(), e.list.begin(), e.list.end());
  }
  return out;
}

uint32_t Hub::Close(std::string_view user_id, std::string_view connection_id, uint16_t code,
                    const std::string& reason) {
  std::vector<std::shared_ptr<Connection>> conns = Find(user_id, connection_id);
  for (const auto& c : conns) c->Close(code, reason);
  return static_cast<uint32_t>(conns.size());
}

std::vector<ClientSnapshot> Hub::Snapshot(std::optional<std::string_view> user_id) {
  std::vector<std::shared_ptr<Connection>> conns = user_id ? Find(*user_id) : All();
  std::vector<ClientSnapshot> out;
  out.reserve(conns.size());
  for (const auto& c : conns) {
    out.push_back(ClientSnapshot{c->info(), c->messages_sent(), c->queued_bytes()});
  }
  std::sort(out.begin(), out.end(), [](const ClientSnapshot& a, const ClientSnapshot& b) {
    return std::tie(a.info.user_id, a.info.connection_id) <
           std::tie(b.info.user_id, b.info.connection_id);
  });
  return out;
}

}  // namespace push
