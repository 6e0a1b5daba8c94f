#pragma once

// Presence (CONTRACT §6): who is connected, as an ordered log of events that backends watch.
//
//  - PresenceState: the rules as a plain state machine (CONNECTED/DISCONNECTED per connection,
//    ONLINE on a user's first connection anywhere, OFFLINE once the user has had none for the
//    offline delay, DISCONNECTED "node lost" for every connection of a node that died). The
//    in-memory log runs it; the Redis log runs the same rules in Lua (redis_presence.cc).
//  - Feed: the events this process holds for its WatchPresence streams (the newest, in cursor
//    order) and the streams waiting for more. The log publishes into it.
//  - PresenceLog: where events are made and kept: in memory (MemoryPresence), or in Redis
//    (RedisPresence: one ordered log for the whole cluster). It hears of connections from the
//    hub (HubObserver) and answers reads older than the feed holds.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/strings.h"
#include "common/delivery/hub.h"

namespace push::presence {

// The numbers are PresenceEvent.Kind's.
enum class Kind : uint8_t {
  kConnected = 1,
  kDisconnected = 2,
  kOnline = 3,
  kOffline = 4,
  kResync = 5,
};

struct Event {
  uint64_t cursor = 0;  // grows by one per event, cluster-wide
  Kind kind = Kind::kConnected;
  std::string user_id;
  std::string connection_id;  // CONNECTED, DISCONNECTED
  std::string device_id;      // CONNECTED, DISCONNECTED (empty: no device)
  std::string node_id;        // where the connection was (ONLINE: the first; OFFLINE: the last)
  std::string reason;         // DISCONNECTED: why ("client closed", "node lost", ...)
  absl::Time at;
};

// The reason of a DISCONNECTED made for a node that died without goodbye.
inline constexpr std::string_view kNodeLost = "node lost";

// Strings that many entries share (node ids, reasons), each kept once with a count of the entries
// that hold it: an entry keeps a small id instead of the string. Not thread-safe.
class SharedStrings {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // At most `max_entries` strings, each at most `max_length` bytes.
  SharedStrings(size_t max_entries, size_t max_length)
      : max_entries_(max_entries), max_length_(max_length) {}

  // The id of `s`, held once more; kNone (nothing held) when `s` is past the bounds.
  uint32_t Hold(std::string_view s);
  // The id of `s` when it is held (nothing changes), else kNone.
  uint32_t Find(std::string_view s) const;
  void Release(uint32_t id);
  std::string_view Get(uint32_t id) const { return entries_[id].value; }
  size_t size() const { return ids_.size(); }
  void Clear();

 private:
  struct Entry {
    std::string value;
    uint32_t holders = 0;
  };
  const size_t max_entries_;
  const size_t max_length_;
  std::vector<Entry> entries_;  // by id; a free id has no holders
  std::vector<uint32_t> free_;
  StringMap<uint32_t> ids_;
};

// The presence rules, for one log. Events come out without a cursor (the log numbers them).
// Not thread-safe: the owner locks.
class PresenceState {
 public:
  explicit PresenceState(absl::Duration offline_delay) : offline_delay_(offline_delay) {}
  ~PresenceState();
  PresenceState(const PresenceState&) = delete;
  PresenceState& operator=(const PresenceState&) = delete;

  // A connection opened on `node`: CONNECTED, then ONLINE when the user was offline. A user
  // whose last connection closed less than the delay ago is still online: no ONLINE. A
  // connection already open (same node and id) makes nothing.
  void Connected(std::string_view node, const ConnectionInfo& c, absl::Time now,
                 std::vector<Event>* out);
  // A connection closed: DISCONNECTED with `reason`; the user's last connection starts the
  // offline delay. A connection not open (already reported, or lost with its node) makes nothing.
  void Disconnected(std::string_view node, std::string_view connection_id, std::string_view reason,
                    absl::Time now, std::vector<Event>* out);
  // Every connection still open on `node` ends: DISCONNECTED "node lost".
  void NodeLost(std::string_view node, absl::Time now, std::vector<Event>* out);
  // OFFLINE for every user whose delay has run out by `now`, in the order they became due.
  void Expire(absl::Time now, std::vector<Event>* out);

  // When the next OFFLINE falls due (InfiniteFuture: none pending).
  absl::Time NextDue() const;
  size_t connections() const { return connections_.size(); }
  bool online(std::string_view user) const { return users_.contains(user); }

 private:
  // What every idle connection costs, so both are one small heap block each (presence.cc): the
  // user's (count and id) and the connection's (its user's block, node, id and device), in
  // hash sets of pointers. Node ids are shared (nodes_).
  struct User;
  struct Open;
  struct OpenKey {
    uint32_t node;
    std::string_view id;
  };
  struct UserHash {
    using is_transparent = void;
    size_t operator()(std::string_view id) const;
    size_t operator()(const User* u) const;
  };
  struct UserEq {
    using is_transparent = void;
    bool operator()(const User* a, const User* b) const;
    bool operator()(const User* a, std::string_view b) const;
    bool operator()(std::string_view a, const User* b) const { return (*this)(b, a); }
  };
  struct OpenHash {
    using is_transparent = void;
    size_t operator()(const OpenKey& k) const;
    size_t operator()(const Open* o) const;
  };
  struct OpenEq {
    using is_transparent = void;
    bool operator()(const Open* a, const Open* b) const;
    bool operator()(const Open* a, const OpenKey& b) const;
    bool operator()(const OpenKey& a, const Open* b) const { return (*this)(b, a); }
  };
  // A user whose connections are all closed, until OFFLINE (or a new connection).
  struct Leaving {
    absl::Time since;    // the last connection closed then
    uint32_t last_node;  // where it was (in nodes_)
  };

  const absl::Duration offline_delay_;
  SharedStrings nodes_{SIZE_MAX, SIZE_MAX};             // held by each connection and each Leaving
  absl::flat_hash_set<User*, UserHash, UserEq> users_;  // online users (and those leaving)
  absl::flat_hash_set<Open*, OpenHash, OpenEq> connections_;  // by node and connection id
  absl::flat_hash_map<const User*, Leaving> leaving_;
  // When OFFLINE falls due -> user; an entry whose user reconnected meanwhile is skipped.
  std::multimap<absl::Time, std::string> due_;
};

// The newest events, shared by this process's WatchPresence streams, packed (an idle connection's
// CONNECTED and ONLINE take about the bytes of their strings): Take makes Events of them.
// Thread-safe.
class Feed {
 public:
  // A stream waiting for events past its position.
  class Waiter {
   public:
    // Called once per Wait that returned true, on the publishing thread, under the feed's lock
    // (so that after Cancel returns it is not called any more): must not block nor call the feed.
    virtual void Wake() = 0;

   protected:
    ~Waiter() = default;
  };

  struct Options {
    size_t capacity = 20000;                    // events held; the oldest go first
    absl::Duration retention = absl::Hours(1);  // events older than this go on Trim
    Clock* clock = Clock::Real();
  };
  explicit Feed(Options options);
  ~Feed();

  // The log's new events, cursors increasing. An event that does not follow last() (the one
  // before) starts the feed over from it (what came between is only in the log).
  void Publish(std::vector<Event> events) ABSL_LOCKS_EXCLUDED(mu_);
  // The log's newest cursor before any event was published here (the Redis log at start); the
  // feed starts over from it when it differs from last().
  void Reset(uint64_t last) ABSL_LOCKS_EXCLUDED(mu_);
  // Drops events past the retention.
  void Trim() ABSL_LOCKS_EXCLUDED(mu_);

  enum class Read {
    kOk,      // `out` has the events after `after` (up to `max`), maybe none
    kBefore,  // `after` is older than the oldest event held: ask the log
    kAhead,   // `after` is past the newest cursor
  };
  Read Take(uint64_t after, size_t max, std::vector<Event>* out) const ABSL_LOCKS_EXCLUDED(mu_);
  // The newest cursor (0: none yet), and the oldest held (last() + 1 when none is).
  uint64_t last() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t first() const ABSL_LOCKS_EXCLUDED(mu_);

  // Registers `waiter` to be woken once an event past `after` is held: true. False (nothing
  // registered) when one already is.
  bool Wait(Waiter* waiter, uint64_t after) ABSL_LOCKS_EXCLUDED(mu_);
  // After it returns, the waiter is not woken any more.
  void Cancel(Waiter* waiter) ABSL_LOCKS_EXCLUDED(mu_);
  // Wakes every waiter (shutdown).
  void WakeAll() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void TrimLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Wakes and forgets the waiters whose position `due(after)` says is behind.
  template <class Due>
  void WakeLocked(Due due) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The events are packed into blocks of bytes (presence.cc), consecutive cursors from the oldest
  // block's to last_; node ids and reasons are shared (strings_).
  struct Block {
    std::unique_ptr<char[]> data;
    uint32_t capacity = 0;  // bytes
    uint32_t used = 0;      // bytes of events from the front; their offsets are at the back
    uint32_t count = 0;     // events (the front block's first `dropped_` are gone)
    uint64_t first = 0;     // the first event's cursor
  };
  void AppendLocked(const Event& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PopFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t FirstLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return size_ == 0 ? last_ + 1 : blocks_.front().first + dropped_;
  }

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<Block> blocks_ ABSL_GUARDED_BY(mu_);
  uint32_t dropped_ ABSL_GUARDED_BY(mu_) = 0;  // events of the front block already gone
  size_t size_ ABSL_GUARDED_BY(mu_) = 0;       // events held
  SharedStrings strings_ ABSL_GUARDED_BY(mu_);
  uint64_t last_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<Waiter*, uint64_t> waiters_ ABSL_GUARDED_BY(mu_);
};

// Where presence events are made and kept. Hears of this process's connections from the hub.
class PresenceLog : public HubObserver {
 public:
  struct Page {
    std::vector<Event> events;  // after `after`, in cursor order
    bool resync = false;        // `after` is older than the log keeps (or past its end)
    uint64_t resync_from = 0;   // with resync: the cursor the events go on after
  };
  // Events after `after` that the feed no longer holds, at most `max`; `done` runs once, on any
  // thread.
  virtual void ReadLog(uint64_t after, size_t max,
                       absl::AnyInvocable<void(absl::StatusOr<Page>)> done) = 0;
};

// The embedded default: one process, the log in memory (it is the feed: events older than the
// feed holds are gone). OFFLINE falls due on Tick.
class MemoryPresence final : public PresenceLog {
 public:
  MemoryPresence(std::string node_id, absl::Duration offline_delay, Feed* feed,
                 Clock* clock = Clock::Real());

  void OnAdd(const Connection& connection) override;
  void OnRemove(const Connection& connection, std::string_view reason) override;
  void ReadLog(uint64_t after, size_t max,
               absl::AnyInvocable<void(absl::StatusOr<Page>)> done) override;
  // OFFLINE for users whose delay ran out; trims the feed. Called often (every 100 ms).
  void Tick();

 private:
  void Emit(std::vector<Event> events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string node_id_;
  Feed* const feed_;
  Clock* const clock_;
  absl::Mutex mu_;  // taken before the feed's: events go to the feed in cursor order
  PresenceState state_ ABSL_GUARDED_BY(mu_);
  uint64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace push::presence
