// The sequencer alone: what a connection is sent, in what order, and when it reads the store,
// for replays, pages, gaps, live messages that race a read or each other, resyncs and failures.

#include "edge/sequencer.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace push::edge {
namespace {

// Records what the sequencer sends as readable lines: "welcome 6", "gap 1-2", "3", "live 7".
class Recorder final : public Sequencer::Output {
 public:
  void Welcome(uint64_t last_seq) override { lines.push_back(absl::StrCat("welcome ", last_seq)); }
  void Gap(uint64_t from, uint64_t to) override {
    lines.push_back(absl::StrCat("gap ", from, "-", to));
  }
  void Send(MessagePtr message, bool live) override {
    lines.push_back(absl::StrCat(live ? "live " : "", message->seq));
  }
  std::vector<std::string> Take() { return std::exchange(lines, {}); }

  std::vector<std::string> lines;
};

MessagePtr M(uint64_t seq) {
  return MakeMessage(seq, absl::StrCat("m", seq), absl::UnixEpoch(),
                     absl::UnixEpoch() + absl::Hours(1), "1");
}

// A read's result: after, last_seq, more, the messages' seqs.
store::ReadResult Result(uint64_t after, uint64_t last, std::vector<uint64_t> seqs,
                         bool more = false) {
  store::ReadResult r;
  r.after = after;
  r.last_seq = last;
  r.more = more;
  for (uint64_t s : seqs) r.messages.push_back(M(s));
  return r;
}

using Lines = std::vector<std::string>;

TEST(SequencerTest, ReplaysAfterSinceThenGoesLive) {
  Sequencer seq;
  Recorder out;
  EXPECT_EQ(seq.StartRead(2), std::optional<uint64_t>(2));
  EXPECT_TRUE(seq.reading());
  EXPECT_FALSE(seq.OnRead(Result(2, 4, {3, 4}), out));
  EXPECT_EQ(out.Take(), (Lines{"welcome 4", "3", "4"}));
  EXPECT_TRUE(seq.started());
  EXPECT_FALSE(seq.reading());
  // Live now: the next seq goes out, and only it.
  EXPECT_TRUE(seq.IsNext(5));
  EXPECT_FALSE(seq.IsNext(6));
  ASSERT_EQ(seq.Classify(*M(5)), Sequencer::Live::kNext);
  seq.Take(M(5), /*live=*/true, out);
  EXPECT_EQ(out.Take(), (Lines{"live 5"}));
  EXPECT_EQ(seq.next_seq(), 6u);
}

TEST(SequencerTest, WithoutSinceTheFirstReadStartsAtTheStoredCursor) {
  Sequencer seq;
  Recorder out;
  EXPECT_EQ(seq.StartRead(std::nullopt), std::nullopt);
  EXPECT_FALSE(seq.OnRead(Result(7, 8, {8}), out));  // the store read after its cursor, 7
  EXPECT_EQ(out.Take(), (Lines{"welcome 8", "8"}));
  // Later reads start after what was sent, whatever `since` said.
  EXPECT_EQ(seq.StartRead(2), std::optional<uint64_t>(8));
}

TEST(SequencerTest, WhatTheStreamNoLongerHasBecomesGaps) {
  Sequencer seq;
  Recorder out;
  seq.StartRead(0);
  // 1-2 expired, 5-6 evicted: the read returns 3 and 4 of a stream that ends at 6.
  EXPECT_FALSE(seq.OnRead(Result(0, 6, {3, 4}), out));
  EXPECT_EQ(out.Take(), (Lines{"welcome 6", "gap 1-2", "3", "4", "gap 5-6"}));
  EXPECT_TRUE(seq.IsNext(7));
}

TEST(SequencerTest, APagedReplayWaitsForTheSessionAndDropsLiveMessagesMeanwhile) {
  Sequencer seq;
  Recorder out;
  seq.StartRead(0);
  EXPECT_FALSE(seq.OnRead(Result(0, 5, {1, 2}, /*more=*/true), out));
  EXPECT_EQ(out.Take(), (Lines{"welcome 5", "1", "2"}));
  EXPECT_TRUE(seq.ReplayWaiting());  // no gap for 3-5: the next page has them
  EXPECT_FALSE(seq.IsNext(3));
  // A live message during the replay is dropped: the next page covers it.
  EXPECT_EQ(seq.Classify(*M(6)), Sequencer::Live::kDrop);
  EXPECT_EQ(seq.StartRead(0), std::optional<uint64_t>(2));
  EXPECT_FALSE(seq.ReplayWaiting());
  // The page ends at 5 (it was read before 6 was stored): 6 was seen, so read once more.
  EXPECT_TRUE(seq.OnRead(Result(2, 5, {3, 4, 5}), out));
  EXPECT_EQ(out.Take(), (Lines{"3", "4", "5"}));
  EXPECT_EQ(seq.StartRead(0), std::optional<uint64_t>(5));
  EXPECT_FALSE(seq.OnRead(Result(5, 6, {6}), out));
  EXPECT_EQ(out.Take(), (Lines{"6"}));
  EXPECT_TRUE(seq.IsNext(7));
}

TEST(SequencerTest, ALiveMessageTheReadAlreadyCoveredIsNotSentTwice) {
  Sequencer seq;
  Recorder out;
  seq.StartRead(0);
  EXPECT_EQ(seq.Classify(*M(1)), Sequencer::Live::kDrop);  // published during the read
  EXPECT_FALSE(seq.OnRead(Result(0, 1, {1}), out));        // which returned it
  EXPECT_EQ(out.Take(), (Lines{"welcome 1", "1"}));
  // The publish of 1 arriving late is dropped too.
  EXPECT_EQ(seq.Classify(*M(1)), Sequencer::Live::kDrop);
  EXPECT_TRUE(out.lines.empty());
}

TEST(SequencerTest, ALiveMessageAheadOfTheNextReadsTheHole) {
  Sequencer seq;
  Recorder out;
  seq.StartRead(0);
  seq.OnRead(Result(0, 2, {1, 2}), out);
  out.Take();
  // Concurrent pushes' publishes overtook each other: 4 came before 3.
  EXPECT_EQ(seq.Classify(*M(4)), Sequencer::Live::kRead);
  EXPECT_EQ(seq.StartRead(0), std::optional<uint64_t>(2));
  EXPECT_EQ(seq.Classify(*M(3)), Sequencer::Live::kDrop);  // reading: the read has it
  EXPECT_FALSE(seq.OnRead(Result(2, 4, {3, 4}), out));
  EXPECT_EQ(out.Take(), (Lines{"3", "4"}));
  EXPECT_TRUE(seq.IsNext(5));
}

TEST(SequencerTest, ASinceBeyondTheEndStartsTheNewStreamFromOne) {
  Sequencer seq;
  Recorder out;
  seq.StartRead(10);
  // The stream's numbering was forgotten: it is at 3 now.
  EXPECT_TRUE(seq.OnRead(Result(10, 3, {}), out));
  EXPECT_EQ(out.Take(), (Lines{"welcome 3"}));
  EXPECT_EQ(seq.StartRead(10), std::optional<uint64_t>(0));
  EXPECT_FALSE(seq.OnRead(Result(0, 3, {1, 2, 3}), out));
  EXPECT_EQ(out.Take(), (Lines{"1", "2", "3"}));
}

TEST(SequencerTest, ResyncReadsNowOrAfterTheReadInFlight) {
  Sequencer seq;
  Recorder out;
  EXPECT_FALSE(seq.OnResync());  // nothing read yet: the first read is on its way
  seq.StartRead(0);
  EXPECT_FALSE(seq.OnResync());                     // remembered
  EXPECT_TRUE(seq.OnRead(Result(0, 1, {1}), out));  // so the read ends asking for another
  seq.StartRead(0);
  EXPECT_FALSE(seq.OnRead(Result(1, 1, {}), out));
  EXPECT_TRUE(seq.OnResync());  // live and idle: read now
}

TEST(SequencerTest, ReadFailuresCloseOnlyBeforeTheStart) {
  {
    Sequencer seq;
    seq.StartRead(0);
    EXPECT_EQ(seq.OnReadFailed(), Sequencer::Failure::kClose);
  }
  Sequencer seq;
  Recorder out;
  seq.StartRead(0);
  seq.OnRead(Result(0, 1, {1}), out);
  seq.StartRead(0);
  EXPECT_EQ(seq.OnReadFailed(), Sequencer::Failure::kStay);
  // It stays live for what comes next.
  EXPECT_TRUE(seq.IsNext(2));
  seq.StartRead(0);
  EXPECT_FALSE(seq.OnResync());
  EXPECT_EQ(seq.OnReadFailed(), Sequencer::Failure::kReadAgain);
}

}  // namespace
}  // namespace push::edge
