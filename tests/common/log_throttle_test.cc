#include "common/base/log_throttle.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/fakes.h"

namespace push {
namespace {

using ::push::testing::FakeClock;

TEST(LogThrottleTest, FirstEventIsReportedAtOnceThenOneSummaryPerInterval) {
  FakeClock clock;
  LogThrottle throttle(absl::Seconds(10), &clock);
  EXPECT_EQ(throttle.Hit(), 1u);
  // A burst within the interval is held back, however long.
  for (int i = 0; i < 1000; ++i) {
    clock.Advance(absl::Milliseconds(9));
    EXPECT_EQ(throttle.Hit(), 0u) << i;
  }
  ASSERT_LT(absl::Milliseconds(9) * 1000, absl::Seconds(10));
  clock.Advance(absl::Seconds(1));
  // 9 s + 1 s: the interval has passed; the next event reports itself and the held back ones.
  EXPECT_EQ(throttle.Hit(), 1001u);
  EXPECT_EQ(throttle.Hit(), 0u);
}

TEST(LogThrottleTest, DueReportsTheTailOfABurstOnlyWhenTheIntervalHasPassed) {
  FakeClock clock;
  LogThrottle throttle(absl::Seconds(10), &clock);
  EXPECT_EQ(throttle.Due(), 0u);  // nothing happened
  EXPECT_EQ(throttle.Hit(), 1u);
  EXPECT_EQ(throttle.Due(), 0u);  // reported just now, nothing held back
  throttle.Hit();
  throttle.Hit();
  clock.Advance(absl::Seconds(9));
  EXPECT_EQ(throttle.Due(), 0u);  // within the interval
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(throttle.Due(), 2u);
  EXPECT_EQ(throttle.Due(), 0u);
  // Due() reporting started a new interval: an event right after it is held back.
  EXPECT_EQ(throttle.Hit(), 0u);
  clock.Advance(absl::Seconds(10));
  EXPECT_EQ(throttle.Due(), 1u);
}

TEST(LogThrottleTest, AfterAQuietIntervalTheNextEventIsReportedAtOnce) {
  FakeClock clock;
  LogThrottle throttle(absl::Seconds(10), &clock);
  EXPECT_EQ(throttle.Hit(), 1u);
  clock.Advance(absl::Minutes(5));
  // Due() with nothing held back must not start an interval that would hold the next event.
  EXPECT_EQ(throttle.Due(), 0u);
  EXPECT_EQ(throttle.Hit(), 1u);
  clock.Advance(absl::Seconds(10));
  EXPECT_EQ(throttle.Hit(), 1u);
}

TEST(LogThrottleTest, ConcurrentHitsAreReportedExactlyOnce) {
  FakeClock clock;
  LogThrottle throttle(absl::Seconds(1), &clock);
  constexpr int kThreads = 4;
  constexpr int kHits = 20000;
  std::atomic<uint64_t> reported{0};
  std::atomic<uint64_t> reports{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kHits; ++i) {
        if (uint64_t n = throttle.Hit(); n > 0) {
          reported += n;
          ++reports;
        }
        // One thread moves time so that several intervals pass during the run.
        if (t == 0 && i % 1000 == 0) clock.Advance(absl::Milliseconds(500));
      }
    });
  }
  for (auto& t : threads) t.join();
  clock.Advance(absl::Seconds(1));
  reported += throttle.Due();
  EXPECT_EQ(reported.load(), uint64_t{kThreads} * kHits);
  // 20 advances of 0.5 s: about one report a second, never one per event.
  EXPECT_GE(reports.load(), 1u);
  EXPECT_LE(reports.load(), 12u);
}

}  // namespace
}  // namespace push
