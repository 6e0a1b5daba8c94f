#pragma once

#include <cstddef>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace push {

// The socket writes of one burst of work on one thread, sent together at its end.
//
// A write to a peer that sleeps in epoll costs the writer the TCP work and the peer's wake-up,
// and on loopback (and on this VM) the wake-up is the larger part (an IPI, BENCHMARKS.md). A
// burst of writes wakes each peer once, and writes to one socket that go out as one segment cost
// one transmit. So a thread that serves bursts of requests (a gRPC completion-queue thread: one
// read brings it many calls) opens a batch, and while it serves a burst:
//  - a WebSocket session queues its frames and registers one flush here (DeferWrite) instead of
//    writing at once;
//  - a unary call registers its answer here (DeferAnswer) instead of answering at once;
//  - the socket writes of the thread's own handlers and of the answers are corked (Corking():
//    pushd's sendmsg adds MSG_MORE and reports the socket with Corked), so that gRPC's answers to
//    one caller share segments.
// Flush, when the burst ends, sends the frames, then the answers (so an answer never goes before
// the frames of its own push), then pushes every corked socket out.
//
// Thread-local and single-threaded: only the thread that opened the batch defers into it; work on
// any other thread writes at once, as without a batch.
class WriteBatch {
 public:
  // The batch open on this thread, or null.
  static WriteBatch* Current();

  // Runs `flush` when the batch flushes (phase 1: writes to clients).
  void DeferWrite(absl::AnyInvocable<void()> flush) { writes_.push_back(std::move(flush)); }
  // Runs `answer` after the writes (phase 2: answers to callers).
  void DeferAnswer(absl::AnyInvocable<void()> answer) { answers_.push_back(std::move(answer)); }

  // Whether anything waits for Flush: deferred work or corked sockets.
  bool empty() const { return writes_.empty() && answers_.empty() && corked_.empty(); }

  // Runs what waits: every write, then every answer (corked when there are several), then
  // uncorks. What they defer while running runs in the same flush, writes again before answers.
  void Flush();

  // Whether socket writes on this thread should be corked now (MSG_MORE) and reported with
  // Corked: during Cork scopes and a flush's answers.
  static bool Corking();
  // A socket written with MSG_MORE while Corking(): Flush pushes it out.
  static void Corked(int fd);

  // Corks this thread's socket writes for its lifetime (the batch must be open).
  class Cork {
   public:
    Cork();
    ~Cork();
    Cork(const Cork&) = delete;
    Cork& operator=(const Cork&) = delete;
  };

  // Opens a batch on this thread for its lifetime (flushing it at the end); not nested.
  class Scope {
   public:
    Scope();
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    WriteBatch& batch() { return *batch_; }

   private:
    WriteBatch* batch_;
  };

 private:
  // Pushes out what the corked sockets hold.
  void Uncork();

  std::vector<absl::AnyInvocable<void()>> writes_;
  std::vector<absl::AnyInvocable<void()>> answers_;
  std::vector<absl::AnyInvocable<void()>> running_;  // Flush's round (kept for its capacity)
  std::vector<int> corked_;
};

}  // namespace push
