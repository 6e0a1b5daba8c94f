#pragma once

// Presence with Redis or a Redis Cluster (CONTRACT §6): one ordered log of presence events for
// the whole cluster, made by Lua scripts that run PresenceState's rules (common/delivery/
// presence.h) on keys that all share the hash tag {presence} (layout: redis_schema.h), so every
// step is atomic on one shard and the cursor grows by one per event cluster-wide.
//
//  - Reports: the hub tells of each connection added or removed (OnAdd/OnRemove, on edge
//    threads, never blocking): the report goes to an outbox, and one batch script at a time
//    applies what waits there (group commit, up to max_batch reports per call). A batch that
//    fails stays and is sent again (every report is idempotent: a connection already known is
//    not CONNECTED twice, one not known is not DISCONNECTED). The outbox is bounded; reports
//    past it are dropped (presence_reports_dropped), and once Redis answers again this
//    instance's set of connections is made right against the hub (a "repair").
//  - Leases: each reporting instance holds a lease in pushd:{presence}:insts, renewed by every
//    batch and every tick. Any node's tick (the sweep script) ends an instance whose lease ran
//    out: DISCONNECTED "node lost" for each connection it reported, up to max_lost per call.
//    An instance that finds its lease gone (it was taken for dead, or Redis lost its data)
//    repairs its set. The same sweep makes OFFLINE for users whose delay ran out (each once,
//    however many nodes sweep) and trims the log by time and by count.
//  - The tail: on a process with a Feed, a link of its own (a blocking XREAD must not hold up
//    commands) follows the log and publishes every event into the feed, in cursor order.
//  - ReadLog: events older than the feed holds, from the log (XRANGE), or RESYNC when they
//    were trimmed.
//
// Timing with the defaults: a node that dies without goodbye is taken for dead when its lease
// (15 s) runs out, at most 1 s later a sweep makes its DISCONNECTEDs, and OFFLINE comes after
// the offline delay (5 s) plus at most one tick: within 22 s, inside the contract's 30 s.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/log_throttle.h"
#include "common/delivery/hub.h"
#include "common/delivery/presence.h"
#include "common/redis/router.h"

namespace push {

struct RedisPresenceOptions {
  std::string node_id;
  // The process's lease identity (RedisBackend::instance()): unique per process lifetime.
  std::string instance;
  absl::Duration offline_delay = absl::Seconds(5);  // --presence_offline_delay
  absl::Duration retention = absl::Hours(1);        // --presence_retention
  // Events kept in the log at most (XADD MAXLEN ~): a cap for churn beyond what retention holds.
  size_t max_events = 1000000;
  // Reports waiting for Redis at most; more are dropped (and repaired once Redis answers).
  size_t max_outbox = 100000;
  size_t max_batch = 500;    // reports per batch script
  size_t max_lost = 500;     // connections of a dead instance per sweep script
  size_t max_offline = 200;  // OFFLINEs per sweep script
  // A report waits this long for others to share its batch script (unless a batch is full or
  // one is in flight: then it goes with the next): one script per report costs Redis more CPU
  // than the report itself.
  absl::Duration linger = absl::Milliseconds(5);
  // An instance that renews nothing for this long is taken for dead (renewed every tick).
  absl::Duration lease = absl::Seconds(15);
  // The tail's XREAD BLOCK; its link's command timeout must be longer.
  absl::Duration block = absl::Seconds(2);
};

class RedisPresence final : public presence::PresenceLog {
 public:
  // `commands` runs the scripts (its connections have Scripts() among their scripts). `tail`
  // (with `feed`) is a router of its own for the blocking XREAD; both null: no feed here.
  // `hub`: this process holds connections and reports them (add this as its observer); null:
  // API-only, it reports nothing. Everything given must outlive this, and the links must be
  // stopped before it is destroyed.
  RedisPresence(RedisPresenceOptions options, redis::Router* commands, redis::Router* tail,
                presence::Feed* feed, Hub* hub);
  ~RedisPresence() override;

  static std::vector<std::string> Scripts();

  // Starts the tail (reads the log's newest cursor, resets the feed to it, follows the log).
  void Start();
  // No command is started after this (call before stopping the links).
  void Stop();

  // HubObserver (on edge threads; never blocks):
  void OnAdd(const Connection& connection) override;
  void OnRemove(const Connection& connection, std::string_view reason) override;

  void ReadLog(uint64_t after, size_t max,
               absl::AnyInvocable<void(absl::StatusOr<Page>)> done) override;

  // Every second (RedisBackend's ticker): sends reports held back by a failure, runs the sweep
  // (lease, dead instances, OFFLINE, trim), restarts the tail if it stopped, trims the feed.
  void OnTick();
  // The commands' link is up again: reports held back go now.
  void OnCommandsUp();
  // Takes `instance` for dead now (its lease is ended): DISCONNECTED "node lost" for each of
  // its connections, OFFLINE when due. Idempotent, and safe when several nodes run it at once.
  void NodeLost(const std::string& instance);
  // Graceful shutdown: waits up to `timeout` until every report is in Redis, then (when this
  // instance has no connection left there) gives up the lease. True when everything was sent.
  bool Flush(absl::Duration timeout);

  // Reports waiting (tests, metrics).
  size_t outbox_size() const;
  // The tail has read the log's newest cursor and follows the log from there.
  bool following() const { return tail_started_.load(); }

 private:
  struct Op {
    char kind = 'C';  // 'C' connected, 'D' disconnected, 'R' repair against `live`
    std::string user_id;
    std::string connection_id;
    std::string device_id;
    std::string reason;
    std::shared_ptr<std::vector<Op>> live;  // 'R': the hub's connections (as 'C' ops)
  };

  void Enqueue(Op op);
  // The linger: Pump once the reports that came have waited options_.linger.
  void FlushLoop();
  // Sends the next batch (or repair step) when none is in flight.
  void Pump();
  void OnBatchDone(size_t ops, absl::StatusOr<redis::Value> v);
  void OnRepairKeys(absl::StatusOr<redis::Value> v);
  void Failed(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A reply says this instance's lease was missing: repair unless this is the first one.
  void LeaseSeen(bool missing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueRepair() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Sweep(const std::string& force_dead, absl::AnyInvocable<void()> done);
  std::vector<std::string> Keys() const;

  void BeginTail();
  void ReadTail();

  absl::Mutex flush_mu_;
  bool flush_wanted_ ABSL_GUARDED_BY(flush_mu_) = false;
  bool flush_stop_ ABSL_GUARDED_BY(flush_mu_) = false;
  std::thread flusher_;                 // Start and Stop only
  std::atomic<bool> lingering_{false};  // the flusher runs: reports may wait for it

  const RedisPresenceOptions options_;
  redis::Router* const commands_;
  redis::Router* const tail_;
  presence::Feed* const feed_;
  Hub* const hub_;
  const uint16_t slot_;
  const std::string instance_key_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> sweeping_{false};
  LogThrottle batch_failures_{absl::Seconds(10)};
  LogThrottle sweep_failures_{absl::Seconds(10)};
  LogThrottle tail_failures_{absl::Seconds(10)};
  LogThrottle drops_{absl::Seconds(10)};

  mutable absl::Mutex mu_;
  std::deque<Op> outbox_ ABSL_GUARDED_BY(mu_);
  size_t queued_reports_ ABSL_GUARDED_BY(mu_) = 0;  // 'C' and 'D' in outbox_
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  bool need_repair_ ABSL_GUARDED_BY(mu_) = false;
  bool leased_ ABSL_GUARDED_BY(mu_) = false;  // a reply showed our lease once
  bool gone_ ABSL_GUARDED_BY(mu_) = false;    // Flush gave up the lease

  // The tail, on its link's thread (and OnTick's, when it is not running).
  std::atomic<bool> tailing_{false};
  std::atomic<bool> tail_started_{false};
  // The newest cursor published; touched by one tail step at a time (tailing_ orders them).
  uint64_t tail_last_ = 0;
};

}  // namespace push
