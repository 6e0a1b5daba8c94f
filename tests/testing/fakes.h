#pragma once

// Test doubles of the project's own interfaces, for unit tests of the plain classes.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/delivery/hub.h"

namespace push::testing {

// A clock that moves only when the test says so.
class FakeClock final : public Clock {
 public:
  // Where every FakeClock starts (2023-11-14T22:13:20Z).
  static constexpr int64_t kStartUnixSeconds = 1'700'000'000;

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(kStartUnixSeconds);
};

// Records what it is handed; stands in for the edge's WebSocket session.
class RecordingConnection final : public Connection {
 public:
  RecordingConnection(ConnectionInfo info, uint64_t messages_sent, uint64_t queued_bytes)
      : info_(std::move(info)), messages_sent_(messages_sent), queued_bytes_(queued_bytes) {}

  const ConnectionInfo& info() const override { return info_; }
  void Deliver(MessagePtr message) override {
    absl::MutexLock lock(&mu_);
    delivered_.push_back(std::move(message));
  }
  void Close(uint16_t code, std::string reason) override {
    absl::MutexLock lock(&mu_);
    closes_.emplace_back(code, std::move(reason));
  }
  uint64_t messages_sent() const override { return messages_sent_; }
  uint64_t queued_bytes() const override { return queued_bytes_; }

  std::vector<MessagePtr> delivered() const {
    absl::MutexLock lock(&mu_);
    return delivered_;
  }
  std::vector<std::pair<uint16_t, std::string>> closes() const {
    absl::MutexLock lock(&mu_);
    return closes_;
  }

 private:
  const ConnectionInfo info_;
  const uint64_t messages_sent_;
  const uint64_t queued_bytes_;
  mutable absl::Mutex mu_;
  std::vector<MessagePtr> delivered_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint16_t, std::string>> closes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace push::testing
