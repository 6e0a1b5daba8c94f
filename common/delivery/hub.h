#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/close.h"
#include "common/base/strings.h"
#include "common/delivery/message.h"
#include "common/delivery/store.h"

namespace push {

struct ConnectionInfo {
  std::string user_id;
  std::string connection_id;
  std::string remote_address;
  std::string user_agent;
  std::string device_id;  // the device_id query parameter; empty = none
  absl::Time connected_at;
};

// One live client connection as the hub sees it. Implemented by the edge; every method is
// thread-safe and returns at once (work is handed to the connection's own executor).
class Connection {
 public:
  virtual ~Connection() = default;
  virtual const ConnectionInfo& info() const = 0;
  virtual void Deliver(MessagePtr message) = 0;
  virtual void Close(uint16_t code, std::string reason) = 0;
  virtual uint64_t messages_sent() const = 0;
  virtual uint64_t queued_bytes() const = 0;
  // Catch up from the store after routing may have missed messages (a lost Redis link).
  virtual void Resync() {}
};

// Told of every connection added to or removed from the hub (the Redis directory registers
// them, presence reports them), outside the hub's locks, on the thread that added or removed it.
class HubObserver {
 public:
  virtual ~HubObserver() = default;
  virtual void OnAdd(const Connection& connection) = 0;
  // `reason`: why it ended, in words ("client closed", "deleted", "shutdown", ...).
  virtual void OnRemove(const Connection& connection, std::string_view reason) = 0;
};

struct ClientSnapshot {
  ConnectionInfo info;
  uint64_t messages_sent = 0;
  uint64_t queued_bytes = 0;
};

// Who is connected: user -> live connections, sharded by user so publishers of different users
// never contend. Subscriber lists are copied under the shard lock and used after unlocking. The
// store's publication sink: what the store publishes reaches connections through Publish.
class Hub final : public store::PublicationSink {
 public:
  explicit Hub(int shards = 64);

  // Before the first Add; observers are told in the order they were added.
  void AddObserver(HubObserver* observer) { observers_.push_back(observer); }

  // `reserved`: the connection takes over a slot held by Reserve.
  void Add(std::shared_ptr<Connection> connection, bool reserved = false);
  void Remove(const Connection& connection, std::string_view reason = "closed");

  // Holds one of the user's `limit` connection slots for an upgrade in progress, so that
  // concurrent upgrades cannot together pass the limit; false when the user's connections plus
  // the slots already held reach `limit`. The slot ends with Add(…, true) or Release.
  bool Reserve(std::string_view user_id, uint32_t limit);
  void Release(std::string_view user_id);

  // Hands the message to every live connection of the user; returns how many.
  uint32_t Publish(std::string_view user_id, const MessagePtr& message);
  uint32_t OnPublication(std::string_view user_id, const MessagePtr& message) override {
    return Publish(user_id, message);
  }

  // The user's connections, or only the one with `connection_id` when it is not empty.
  std::vector<std::shared_ptr<Connection>> Find(std::string_view user_id,
                                                std::string_view connection_id = {});
  std::vector<std::shared_ptr<Connection>> All();

  // Closes the user's connections (or only `connection_id`); returns how many were closed.
  uint32_t Close(std::string_view user_id, std::string_view connection_id, uint16_t code,
                 const std::string& reason);

  // Snapshots of every connection (or the user's), sorted by (user_id, connection_id).
  std::vector<ClientSnapshot> Snapshot(std::optional<std::string_view> user_id);

  int64_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  using ConnectionList = absl::InlinedVector<std::shared_ptr<Connection>, 2>;
  // A user's live connections, never empty. Found by the user id they all share, read from the
  // first one: the hub keeps no copy of it (a connection's info never changes while it lives).
  struct UserEntry {
    // Changing it leaves the entry's key as it was: every connection in it has the same user id.
    mutable ConnectionList list;
    std::string_view user_id() const { return list.front()->info().user_id; }
  };
  // Not ShardFor's hash: within a shard that one's low bits are all alike, and the table takes
  // its control bytes from them.
  struct UserEntryHash {
    using is_transparent = void;
    size_t operator()(std::string_view user_id) const { return absl::HashOf(ToAbsl(user_id), 1); }
    size_t operator()(const UserEntry& e) const { return (*this)(e.user_id()); }
  };
  struct UserEntryEq {
    using is_transparent = void;
    bool operator()(const UserEntry& a, const UserEntry& b) const {
      return a.user_id() == b.user_id();
    }
    bool operator()(const UserEntry& a, std::string_view b) const { return a.user_id() == b; }
    bool operator()(std::string_view a, const UserEntry& b) const { return a == b.user_id(); }
  };
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_set<UserEntry, UserEntryHash, UserEntryEq> users ABSL_GUARDED_BY(mu);
    // Slots held by upgrades in progress, per user; empty between handshakes, so that an
    // idle connection costs nothing here.
    StringMap<uint32_t> reserved ABSL_GUARDED_BY(mu);
  };
  Shard& ShardFor(std::string_view user_id);

  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<int64_t> size_{0};
  std::vector<HubObserver*> observers_;
};

}  // namespace push
