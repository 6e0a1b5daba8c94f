#include "edge/queue_budget.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "common/base/limits.h"
#include "common/base/metrics.h"

namespace push::edge {

namespace {
constexpr int64_t kShedIntervalNs = 50'000'000;
}  // namespace

void QueueBudget::Shed(uint64_t total) {
  int64_t now = Metrics::NowNanos();
  int64_t next = next_shed_ns_.load(std::memory_order_relaxed);
  if (now < next || !next_shed_ns_.compare_exchange_strong(next, now + kShedIntervalNs,
                                                           std::memory_order_relaxed)) {
    return;  // a shed ran moments ago, or another thread runs this one
  }
  std::vector<std::pair<uint64_t, std::shared_ptr<Connection>>> backlogs;
  uint64_t listed = 0;
  for (auto& c : hub_->All()) {
    if (uint64_t queued = c->queued_bytes(); queued > 0) {
      listed += queued;
      backlogs.emplace_back(queued, std::move(c));
    }
  }
  // The total also holds what no shed can take back (connections already closing, flushing a
  // going-away close, or lingering): only the listed connections' bytes count here, so that
  // those never get healthy connections closed.
  total = std::min(total, listed);
  std::sort(backlogs.begin(), backlogs.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  const uint64_t target = max_bytes_ - max_bytes_ / 4;
  for (auto& [queued, c] : backlogs) {
    if (total <= target) break;
    c->Close(kCloseSlowConsumer, "slow consumer");
    RecordLimitHit(Limit::kQueuedBytes);
    total -= std::min(total, queued);
  }
}

}  // namespace push::edge
