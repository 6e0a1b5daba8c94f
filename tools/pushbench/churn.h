#pragma once

// The churn scenario's moving parts: WebSocket connections that open, read their welcome and
// close, over and over (ChurnClients), and WatchPresence streams that read every presence event
// those cycles make (PresenceWatchers). main.cc runs them and measures the server around them.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tools/pushbench/stats.h"

namespace pushbench {

struct ChurnOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  int io_threads = 2;
  int source_ips = 8;  // source addresses 127.0.0.1..N, round robin per cycle
  // Cycles in flight at most (each a connection being opened, welcomed or closed).
  int workers = 64;
  // Cycles started per second, on a fixed schedule (a late start is counted, not skipped);
  // 0 = as fast as `workers` go.
  double rate = 1000;
  // Cycle i connects as user (splitmix64(seed + i) % users): a fixed sequence for a seed.
  int users = 5000;
  uint64_t seed = 1;
  std::string user_prefix = "churn-";
};

// What the cycles did so far (live counters, summed over threads).
struct ChurnCounts {
  uint64_t started = 0;
  uint64_t done = 0;    // welcomed and closed cleanly
  uint64_t failed = 0;  // any step failed (connect, handshake, welcome, close)
  uint64_t late = 0;    // fixed rate: started more than 1 ms after their slot
};

class ChurnClients {
 public:
  explicit ChurnClients(ChurnOptions options);
  ~ChurnClients();
  ChurnClients(const ChurnClients&) = delete;
  ChurnClients& operator=(const ChurnClients&) = delete;

  // Starts the cycles (slot 0 now).
  void Start();
  ChurnCounts Counts() const;
  // No cycle starts after this; waits (at most `timeout_s`) for those under way. True when all
  // finished.
  bool Stop(double timeout_s);

  // After Stop: connect to welcome, and the whole cycle (connect to closed), every cycle.
  Histogram WelcomeLatency() const;
  Histogram CycleLatency() const;
  std::string FirstError() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Per watcher: what it read (live counters).
struct WatcherCounts {
  uint64_t events = 0;
  uint64_t connected = 0, disconnected = 0, online = 0, offline = 0, resync = 0, other = 0;
  uint64_t gaps = 0;          // cursors skipped (an unfiltered watcher must see every cursor)
  uint64_t out_of_order = 0;  // a cursor at or below one already seen
  uint64_t first_cursor = 0;  // the presence-cursor the stream started after
  uint64_t last_cursor = 0;
  bool live = false;  // initial metadata came
  bool ended = false;
  std::string end_status;  // when ended: code and message
};

// N WatchPresence streams for every user, from now on, each on a channel (TCP connection) of its
// own, as N separate backends would be.
class PresenceWatchers {
 public:
  PresenceWatchers(const std::string& grpc_target, int count);
  ~PresenceWatchers();
  PresenceWatchers(const PresenceWatchers&) = delete;
  PresenceWatchers& operator=(const PresenceWatchers&) = delete;

  // Waits until every stream has its initial metadata (the watch is live); false after
  // `timeout_s` or when one ended.
  bool WaitLive(double timeout_s, std::string* error);
  std::vector<WatcherCounts> Counts() const;
  // Cancels every stream and waits for them to end.
  void Stop();

 private:
  class Watcher;
  std::vector<std::unique_ptr<Watcher>> watchers_;
};

// GET /metrics on the edge port: the value of each series asked for (UINT64_MAX when absent).
// Empty on failure.
std::vector<uint64_t> ScrapeMetrics(const std::string& host, int port,
                                    const std::vector<std::string>& series);

}  // namespace pushbench
