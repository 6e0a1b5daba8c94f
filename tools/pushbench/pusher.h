#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tools/pushbench/stats.h"

namespace pushbench {

// The users of one run and what the server confirmed for each: pushes answered OK and the
// highest seq it returned. Users are fresh (a run-unique prefix), so their streams start at 1.
struct UserTable {
  explicit UserTable(std::vector<std::string> user_names)
      : names(std::move(user_names)),
        pushed(new std::atomic<uint64_t>[names.size()]),
        max_seq(new std::atomic<uint64_t>[names.size()]) {
    for (size_t i = 0; i < names.size(); ++i) pushed[i] = max_seq[i] = 0;
  }
  size_t size() const { return names.size(); }

  std::vector<std::string> names;
  std::unique_ptr<std::atomic<uint64_t>[]> pushed;
  std::unique_ptr<std::atomic<uint64_t>[]> max_seq;
};

enum class PushMode { kUnary, kStream, kBroadcast };

struct PushOptions {
  PushMode mode = PushMode::kUnary;
  // unary: Push calls in flight; broadcast: Broadcast calls in flight; stream: streams.
  int concurrency = 64;
  int stream_window = 128;    // stream: requests sent but not yet answered, per stream
  int broadcast_batch = 100;  // broadcast: users per call (consecutive, from a random start)
  // Requests per second (a Broadcast is one request); 0 = as fast as the limits below allow.
  double rate = 0;
  double duration_s = 10;
  uint64_t max_requests = 0;  // 0 = no limit
  bool round_robin = false;   // users in order instead of at random
  int payload_bytes = 256;
  // Max-rate only: pause while this many deliveries are pushed but not yet received, so the
  // sender measures what the server sustains instead of filling its queues. 0 = no limit.
  uint64_t max_backlog = 0;
  int connections_per_user = 1;  // for the backlog estimate
  int max_inflight = 20000;      // fixed rate: cap on unanswered requests
};

struct PushStats {
  uint64_t requests = 0;   // RPC requests (unary calls, stream messages, broadcasts)
  uint64_t pushes_ok = 0;  // per-user appends confirmed
  uint64_t failed = 0;     // per-user appends that failed or were never answered
  uint64_t delivered = 0;  // sum of the responses' `delivered`
  uint64_t late = 0;       // fixed rate: requests sent more than 1 ms after their slot
  double seconds = 0;      // from the first request to the last answer
  std::string first_error;
  Histogram rpc_latency_ns;  // request sent to its answer
  Histogram send_lag_ns;     // fixed rate: how late each request left after its slot
};

// Drives PushService over one gRPC channel per `channels` with the callback API.
class Pusher {
 public:
  Pusher(const std::string& target, int channels, UserTable* users);
  ~Pusher();
  Pusher(const Pusher&) = delete;
  Pusher& operator=(const Pusher&) = delete;

  // Waits for the channels to connect; false (and why) after `timeout_s`.
  bool WaitReady(double timeout_s, std::string* error);
  // Pushes per `options` and returns once every request has been answered (or given up on).
  // `received` reports deliveries seen so far, for the backlog limit (may be empty).
  PushStats Run(const PushOptions& options, const std::function<uint64_t()>& received);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pushbench
