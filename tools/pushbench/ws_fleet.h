#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tools/pushbench/stats.h"

namespace pushbench {

struct FleetOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  int io_threads = 2;
  // Connections are spread round-robin over source addresses 127.0.0.1 .. 127.0.0.<source_ips>,
  // each socket bound before connect, so one client is not limited by one address's ports.
  int source_ips = 1;
  // Handshakes in flight at once (all threads together), so the server's accept backlog holds.
  int connect_concurrency = 256;
  // Messages slower than this (0 = none) are listed in FleetTotals::slow, to find stalls in time.
  int64_t slow_ns = 0;
  // The flood scenario: after its welcome frame a connection reads nothing more (a stalled
  // browser tab); the socket stays open.
  bool stop_reading = false;
  // Each connection names a device of its own (device_id=d<index>), so its cursor moves are
  // per-device ones (CONTRACT §6) instead of the user's shared cursor.
  bool device_ids = false;
};

// One message that took longer than FleetOptions::slow_ns.
struct SlowMessage {
  int64_t received_ns;  // steady clock
  int64_t latency_ns;
  uint32_t connection;
};

// What the connections saw, checked against what was pushed.
struct FleetTotals {
  uint64_t connections = 0;
  uint64_t welcomed = 0;
  uint64_t failed = 0;      // never got their welcome frame
  uint64_t dropped = 0;     // closed by the server or lost after the welcome
  uint64_t frames = 0;      // message frames received, duplicates included
  uint64_t unique = 0;      // distinct (connection, seq) message frames
  uint64_t expected = 0;    // what the pushes say every connection should have got
  uint64_t lost = 0;        // expected but never arrived
  uint64_t extra = 0;       // arrived beyond what was pushed successfully
  uint64_t duplicated = 0;  // a seq seen twice on one connection
  uint64_t reordered = 0;   // a seq below one already seen on that connection
  uint64_t gaps = 0;        // gap frames (the server says messages are gone)
  uint64_t bad_frames = 0;  // frames that are not welcome/message/gap, or unparsable
  uint64_t pings = 0;       // server heartbeats answered
  std::string first_error;
  Histogram latency_ns;           // push stamp to receipt, every message frame
  std::vector<SlowMessage> slow;  // at most 100,000, in arrival order per thread
};

// N WebSocket connections to /ws, each on one of a few single-threaded io_contexts, counting what
// arrives per connection (seq bitmap for loss/duplication) and the end-to-end latency from the
// payload's "t" stamp. Beast stays inside ws_fleet.cc.
class WsFleet {
 public:
  explicit WsFleet(FleetOptions options);
  ~WsFleet();
  WsFleet(const WsFleet&) = delete;
  WsFleet& operator=(const WsFleet&) = delete;

  // Opens connection i as user `user_names[conn_user[i]]` and waits until each has its welcome
  // frame or has failed, or until `deadline`. Returns the seconds it took.
  double Connect(const std::vector<std::string>& user_names, const std::vector<uint32_t>& conn_user,
                 Clock::time_point deadline);

  // Live counters, summed over threads (cheap; for progress and backlog control).
  uint64_t Unique() const;
  uint64_t Dropped() const;
  uint64_t Welcomed() const;
  uint64_t Failed() const;

  // Closes every connection and joins the threads. Idempotent.
  void Stop();
  // After Stop: per-connection accounting against `expected(user)`, the number of messages each
  // connection of that user should have received.
  FleetTotals Collect(const std::function<uint64_t(uint32_t)>& expected);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pushbench
