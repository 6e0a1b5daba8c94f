#include "edge/frame_queue.h"

#include <memory>

#include "gtest/gtest.h"

namespace push {
namespace {

TEST(FrameQueueTest, StaysFifoWhileNeverEmptying) {
  FrameQueue<std::unique_ptr<int>> q;
  EXPECT_TRUE(q.empty());
  int next_in = 0, next_out = 0;
  // Two in, one out, for a while: the queue never drains, so compaction must keep order.
  for (int round = 0; round < 10000; ++round) {
    q.push_back(std::make_unique<int>(next_in++));
    q.push_back(std::make_unique<int>(next_in++));
    ASSERT_EQ(*q.front(), next_out++);
    q.pop_front();
  }
  EXPECT_EQ(q.size(), 10000u);
  while (!q.empty()) {
    ASSERT_EQ(*q.front(), next_out++);
    q.pop_front();
  }
  EXPECT_EQ(next_out, next_in);
}

TEST(FrameQueueTest, PopBackDropsTheNewest) {
  FrameQueue<int> q;
  for (int i = 0; i < 5; ++i) q.push_back(i);
  q.pop_front();
  q.pop_back();
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.front(), 1);
  EXPECT_EQ(q.back(), 3);
}

}  // namespace
}  // namespace push
