#pragma once

#include <atomic>
#include <cstdint>

#include "common/delivery/hub.h"

namespace push::edge {

// The process-wide bound on bytes waiting in connections' send queues (--max_queued_bytes): one
// slow consumer is bounded by --send_queue_bytes, but thousands of them together could still
// hold more memory than the host has. Past the bound, the connections with the largest backlogs
// are closed with 4008 first, until the backlog of the connections still open is back under
// three quarters of the bound; the others keep their messages. Unsent messages stay in the store
// and are replayed on reconnect.
class QueueBudget {
 public:
  // `max_bytes` 0: no bound.
  QueueBudget(Hub* hub, uint64_t max_bytes) : hub_(hub), max_bytes_(max_bytes) {}

  // Call after queueing bytes, with the process's queued total (any thread, any lock that the
  // hub's own locks may nest in; Connection::Close only posts). Sheds at most every 50 ms, so
  // that closes already asked for can take effect before more are chosen.
  void Check(uint64_t total) {
    if (max_bytes_ == 0 || total <= max_bytes_) return;
    Shed(total);
  }

  uint64_t max_bytes() const { return max_bytes_; }

 private:
  void Shed(uint64_t total);

  Hub* const hub_;
  const uint64_t max_bytes_;
  std::atomic<int64_t> next_shed_ns_{0};
};

}  // namespace push::edge
