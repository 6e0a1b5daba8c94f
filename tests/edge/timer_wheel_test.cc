// The edge's TimerWheel (edge/timer_wheel.h) on a real io_context: entries fire once, never
// early, across several turns of the wheel, and not for clients that are gone.

#include "edge/timer_wheel.h"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace push::edge {
namespace {

using std::chrono::milliseconds;
using Clock = TimerWheel::Clock;

struct Recorder : TimerWheel::Client {
  void OnWheelTimer(int64_t due) override {
    std::lock_guard<std::mutex> lock(mu);
    fired.push_back(Clock::now());
    dues.push_back(due);
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return fired.size();
  }
  std::mutex mu;
  std::vector<Clock::time_point> fired;
  std::vector<int64_t> dues;
};

struct CountingClient : TimerWheel::Client {
  explicit CountingClient(std::atomic<int>* calls) : calls(calls) {}
  void OnWheelTimer(int64_t) override { calls->fetch_add(1); }
  std::atomic<int>* calls;
};

// The suite's WaitFor, with a 5 s bound.
bool WaitFor(const std::function<bool()>& condition) {
  return push::testing::WaitFor(condition, milliseconds(5000));
}

class TimerWheelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    wheel_.Start();
    runner_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    work_.reset();
    ioc_.stop();
    runner_.join();
  }

  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      ioc_.get_executor()};
  // 2 ms ticks, 8 slots: one turn is 16 ms, so waits of 50 ms go around the wheel three times.
  TimerWheel wheel_{ioc_, milliseconds(2), 8};
  std::thread runner_;
};

TEST_F(TimerWheelTest, EntriesFireOnceAndNeverEarlyAcrossTurns) {
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<milliseconds> waits = {milliseconds(0), milliseconds(5), milliseconds(17),
                                     milliseconds(50), milliseconds(123)};
  std::vector<int64_t> dues;
  Clock::time_point start = Clock::now();
  for (milliseconds wait : waits) {
    clients.push_back(std::make_shared<Recorder>());
    dues.push_back(wheel_.Schedule(clients.back(), wait));
  }
  ASSERT_TRUE(WaitFor([&] {
    for (auto& c : clients)
      if (c->count() == 0) return false;
    return true;
  }));
  std::this_thread::sleep_for(milliseconds(50));  // time for a wrong second call
  for (size_t i = 0; i < clients.size(); ++i) {
    SCOPED_TRACE(waits[i].count());
    ASSERT_EQ(clients[i]->count(), 1u);
    EXPECT_GE(clients[i]->fired[0] - start, waits[i]);
    EXPECT_EQ(clients[i]->dues[0], dues[i]);
  }
}

TEST_F(TimerWheelTest, ARescheduleLeavesTheOldEntryToBeToldApartByItsTick) {
  auto client = std::make_shared<Recorder>();
  int64_t first = wheel_.Schedule(client, milliseconds(30));
  int64_t second = wheel_.Schedule(client, milliseconds(4));
  EXPECT_LT(second, first);
  ASSERT_TRUE(WaitFor([&] { return client->count() == 2; }));
  std::lock_guard<std::mutex> lock(client->mu);
  EXPECT_EQ(client->dues[0], second);
  EXPECT_EQ(client->dues[1], first);
}

TEST_F(TimerWheelTest, EntriesDueOnTheSameTickAllFireAndEndlessWaitsAreCutToADay) {
  std::vector<std::shared_ptr<Recorder>> clients;
  int64_t due = wheel_.DueTick(milliseconds(10));
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_shared<Recorder>());
    wheel_.ScheduleAt(clients.back(), due);
  }
  ASSERT_TRUE(WaitFor([&] {
    for (auto& c : clients)
      if (c->count() == 0) return false;
    return true;
  }));
  // An infinite wait (--ping_interval=inf) must neither overflow nor come due at once.
  int64_t now_tick = wheel_.DueTick(Clock::duration::zero());
  int64_t endless = wheel_.DueTick(Clock::duration::max());
  EXPECT_GT(endless, now_tick);
  EXPECT_LE(endless - now_tick, 24 * 3600 * 1000 / 2 + 2);  // a day of 2 ms ticks
  EXPECT_GE(endless - now_tick, 24 * 3600 * 1000 / 2 - 2);
}

TEST_F(TimerWheelTest, AnEmptyWheelSleepsAndWakesForTheNextEntry) {
  auto first = std::make_shared<Recorder>();
  wheel_.Schedule(first, milliseconds(3));
  ASSERT_TRUE(WaitFor([&] { return first->count() == 1; }));
  std::this_thread::sleep_for(milliseconds(100));  // 50 ticks with nothing to do
  auto second = std::make_shared<Recorder>();
  Clock::time_point start = Clock::now();
  int64_t due = wheel_.Schedule(second, milliseconds(7));
  ASSERT_TRUE(WaitFor([&] { return second->count() == 1; }));
  EXPECT_GE(second->fired[0] - start, milliseconds(7));
  EXPECT_EQ(second->dues[0], due);
}

TEST_F(TimerWheelTest, ClientsThatAreGoneAreNotCalled) {
  std::atomic<int> gone_calls{0};
  auto gone = std::make_shared<CountingClient>(&gone_calls);
  wheel_.Schedule(gone, milliseconds(10));
  gone.reset();
  auto witness = std::make_shared<Recorder>();
  wheel_.Schedule(witness, milliseconds(30));
  ASSERT_TRUE(WaitFor([&] { return witness->count() == 1; }));
  EXPECT_EQ(gone_calls.load(), 0);
}

TEST_F(TimerWheelTest, ClientsMayScheduleAgainFromTheirCall) {
  struct Repeater : TimerWheel::Client {
    explicit Repeater(TimerWheel* wheel) : wheel(wheel) {}
    void OnWheelTimer(int64_t) override {
      if (calls.fetch_add(1) + 1 < 5) wheel->Schedule(self, milliseconds(3));
    }
    TimerWheel* wheel;
    std::weak_ptr<Repeater> self;
    std::atomic<int> calls{0};
  };
  auto repeater = std::make_shared<Repeater>(&wheel_);
  repeater->self = repeater;
  wheel_.Schedule(repeater, milliseconds(1));
  ASSERT_TRUE(WaitFor([&] { return repeater->calls.load() == 5; }));
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_EQ(repeater->calls.load(), 5);
}

}  // namespace
}  // namespace push::edge
