#pragma once

#include <cstdint>
#include <optional>

#include "common/delivery/message.h"
#include "common/delivery/store.h"

namespace push::edge {

// The order one connection's messages go out in: first what the store holds after the client's
// `since` (or the stored cursor), page by page, then the live messages published to it, each
// seq once and in increasing order, with a gap frame for every run of seqs the stream can no
// longer give (expired, evicted). A plain class, no locks, no I/O: the session (which holds its
// own lock) feeds it what arrives and does what it answers; tests/edge/sequencer_test.cc drives
// it alone.
//
// Live messages that arrive while a read is in flight are dropped and remembered (the highest
// seq): the read returns them, or a read after it does. A live message past the next seq (the
// publishes of concurrent pushes can overtake each other) asks for a read of the hole.
class Sequencer {
 public:
  // Where the frames go, in order.
  class Output {
   public:
    // The first read came back: the welcome frame (the stream's latest seq) goes first.
    virtual void Welcome(uint64_t last_seq) = 0;
    // Seqs `from`..`to` can no longer be had.
    virtual void Gap(uint64_t from, uint64_t to) = 0;
    // The next message in order; `live` when it was published now, not read from the store.
    virtual void Send(MessagePtr message, bool live) = 0;

   protected:
    ~Output() = default;
  };

  // A store read is about to start: the seq to read after. The first read starts after `since`
  // (unset: after the stored cursor), later ones after the last seq sent.
  std::optional<uint64_t> StartRead(std::optional<uint64_t> since);

  // The read came back. Sends (through `out`) the welcome on the first read, the messages not
  // sent yet and a gap for what the stream no longer has, and goes live once the read reached
  // the end. True: read again at once (the first `since` lay beyond the stream's end, live
  // messages came during the read that it does not cover, or a resync was asked for meanwhile).
  bool OnRead(store::ReadResult result, Output& out);

  enum class Failure {
    kClose,      // the first read failed: the connection cannot start
    kStay,       // the connection stays as it is; a resync will read again
    kReadAgain,  // a resync came during the read: read again now
  };
  Failure OnReadFailed();

  // A live message published to the connection.
  enum class Live {
    kNext,  // it is the next seq: Take it (when the queue has room)
    kDrop,  // already sent, or a read is in flight (remembered: the read or the next covers it)
    kRead,  // past the next seq: read the hole from the store (StartRead, then the read)
  };
  Live Classify(const Message& message);
  // Whether a live message is the next one of a live connection (the send lane's fast path).
  bool IsNext(uint64_t seq) const { return live_ && seq == next_seq_; }
  // Sends the message Classify said was next (or, in a read's result, any later one), with a
  // gap before it for seqs it skips.
  void Take(MessagePtr message, bool live, Output& out);

  // The store may hold messages this connection missed (a lost Redis link). True: read now;
  // false: nothing to do yet (before the first read), or the read in flight will read again.
  bool OnResync();

  // A read stopped at a page limit and none is in flight: the replay goes on when the queue
  // has drained enough (the session decides when).
  bool ReplayWaiting() const { return replay_more_ && !reading_; }
  bool reading() const { return reading_; }
  bool started() const { return started_; }
  uint64_t next_seq() const { return next_seq_; }

 private:
  uint64_t next_seq_ = 1;        // the next seq the client must get
  uint64_t max_live_seen_ = 0;   // highest live seq dropped while a read was in flight
  bool live_ = false;            // reads are done: live messages go out as they come
  bool started_ = false;         // the first read came back (welcome sent)
  bool replay_more_ = false;     // the last read stopped at a limit
  bool reading_ = false;         // a read is in flight
  bool resync_pending_ = false;  // a resync came during the read in flight
};

}  // namespace push::edge
