#pragma once

// Internal to edge/. One timer for the heartbeats, pong deadlines and token expiries of every
// WebSocket of the edge, instead of a timer object and a pending wait operation per connection
// (about 330 bytes of every idle connection, measured with heaptrack).

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace push::edge {

// A hashed timing wheel: `slots` slots of `tick` (kSlots of kTick by default), turned by one
// steady_timer on its own strand. An entry waits in the slot of its due tick (modulo the wheel) and
// fires when the wheel passes that slot at or after the due tick; an entry due after more than one
// turn stays for the later turns. Rescheduling adds an entry and leaves the old one to be ignored
// (the client compares the tick it is called with to the one it scheduled last), so Schedule is one
// push_back under a lock.
class TimerWheel {
 public:
  class Client {
   public:
    virtual ~Client() = default;
    // Runs on the wheel's strand at or after the due tick `due`, for every client due in that
    // tick one after another: brief work only (a WebSocket session takes its own lock and may
    // write a ping with a non-blocking send); hand anything longer to your own executor.
    virtual void OnWheelTimer(int64_t due) = 0;
  };

  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kTick{20};
  static constexpr size_t kSlots = 1024;  // 20.48 s a turn: the default heartbeat fits in one

  explicit TimerWheel(boost::asio::io_context& ioc, std::chrono::milliseconds tick = kTick,
                      size_t slots = kSlots);
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Starts turning; the io_context's threads run it.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // The tick at which an entry scheduled `after` from now is due (never early). Waits longer
  // than a day are cut to a day: the client, called then, schedules the rest.
  int64_t DueTick(Clock::duration after) const;
  // Thread-safe. Calls `client` once at or after tick `due` (from DueTick), unless it is gone by
  // then.
  void ScheduleAt(std::weak_ptr<Client> client, int64_t due) ABSL_LOCKS_EXCLUDED(mu_);
  // Both at once; returns the due tick `client` will be called with.
  int64_t Schedule(std::weak_ptr<Client> client, Clock::duration after) ABSL_LOCKS_EXCLUDED(mu_) {
    int64_t due = DueTick(after);
    ScheduleAt(std::move(client), due);
    return due;
  }

 private:
  struct Entry {
    std::weak_ptr<Client> client;
    int64_t due;
  };
  void Arm() ABSL_LOCKS_EXCLUDED(mu_);
  void OnTick() ABSL_LOCKS_EXCLUDED(mu_);

  const int64_t tick_;  // milliseconds
  absl::Mutex mu_;
  std::vector<std::vector<Entry>> slots_ ABSL_GUARDED_BY(mu_);
  int64_t next_tick_ ABSL_GUARDED_BY(mu_);  // the first tick not processed yet
  size_t entries_ ABSL_GUARDED_BY(mu_) = 0;
  // The timer is waiting or a turn is running; false while the wheel is empty, so that an idle
  // process does not wake every tick.
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;  // on strand_
};

}  // namespace push::edge
