#include "edge/timer_wheel.h"

#include <algorithm>
#include <boost/asio/bind_executor.hpp>

namespace push::edge {
namespace {

int64_t Millis(TimerWheel::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

TimerWheel::TimerWheel(boost::asio::io_context& ioc, std::chrono::milliseconds tick, size_t slots)
    : tick_(std::max<int64_t>(1, tick.count())),
      slots_(std::max<size_t>(1, slots)),
      next_tick_(Millis(Clock::now()) / tick_),
      strand_(boost::asio::make_strand(ioc)),
      timer_(strand_) {}

void TimerWheel::Start() {
  absl::MutexLock lock(&mu_);
  armed_ = true;
  boost::asio::post(strand_, [this] { Arm(); });
}

int64_t TimerWheel::DueTick(Clock::duration after) const {
  // Clamped before the addition, which would overflow for an infinite wait (--ping_interval=inf).
  after = std::clamp<Clock::duration>(after, Clock::duration::zero(), std::chrono::hours(24));
  Clock::time_point when = Clock::now() + after;
  int64_t at = std::chrono::ceil<std::chrono::milliseconds>(when.time_since_epoch()).count();
  return (at + tick_ - 1) / tick_;  // never early
}

void TimerWheel::ScheduleAt(std::weak_ptr<Client> client, int64_t due) {
  absl::MutexLock lock(&mu_);
  // A tick already passed goes into the next slot the wheel looks at.
  int64_t slot = std::max(due, next_tick_);
  slots_[static_cast<size_t>(slot) % slots_.size()].push_back(Entry{std::move(client), due});
  ++entries_;
  if (!armed_) {
    armed_ = true;  // the wheel was asleep: turn again (it catches up on the ticks it slept)
    boost::asio::post(strand_, [this] { Arm(); });
  }
}

void TimerWheel::Arm() {
  int64_t next;
  {
    absl::MutexLock lock(&mu_);
    next = next_tick_;
  }
  timer_.expires_at(Clock::time_point(std::chrono::milliseconds(next * tick_)));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // the io_context is going away
    OnTick();
  });
}

void TimerWheel::OnTick() {
  const int64_t now = Millis(Clock::now()) / tick_;
  std::vector<std::shared_ptr<Client>> clients;
  std::vector<int64_t> dues;
  {
    absl::MutexLock lock(&mu_);
    // After a long stall, one pass over every slot covers all the ticks missed.
    int64_t last = std::min(now, next_tick_ + static_cast<int64_t>(slots_.size()) - 1);
    for (int64_t t = next_tick_; t <= last; ++t) {
      std::vector<Entry>& slot = slots_[static_cast<size_t>(t) % slots_.size()];
      size_t kept = 0;
      for (size_t i = 0; i < slot.size(); ++i) {
        Entry& e = slot[i];
        if (e.due <= now) {
          if (std::shared_ptr<Client> c = e.client.lock()) {
            clients.push_back(std::move(c));
            dues.push_back(e.due);
          }
        } else {
          // Due on a later turn. (Never a self-move: that empties a weak_ptr.)
          if (kept != i) slot[kept] = std::move(e);
          ++kept;
        }
      }
      entries_ -= slot.size() - kept;
      slot.resize(kept);
      // A slot that once held a burst gives its memory back when it empties.
      if (kept == 0 && slot.capacity() > 64) std::vector<Entry>().swap(slot);
    }
    next_tick_ = std::max(next_tick_, now + 1);
  }
  // Outside the lock: clients may schedule again from here (the wheel is still armed for them).
  for (size_t i = 0; i < clients.size(); ++i) clients[i]->OnWheelTimer(dues[i]);
  {
    absl::MutexLock lock(&mu_);
    if (entries_ == 0) {
      armed_ = false;  // asleep until the next ScheduleAt
      return;
    }
  }
  Arm();
}

}  // namespace push::edge
