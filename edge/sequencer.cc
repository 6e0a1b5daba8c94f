#include "edge/sequencer.h"

#include <algorithm>
#include <utility>

namespace push::edge {

std::optional<uint64_t> Sequencer::StartRead(std::optional<uint64_t> since) {
  reading_ = true;
  live_ = false;
  return started_ ? std::optional<uint64_t>(next_seq_ - 1) : since;
}

bool Sequencer::OnRead(store::ReadResult result, Output& out) {
  reading_ = false;
  if (!started_) {
    started_ = true;
    next_seq_ = result.after + 1;
    out.Welcome(result.last_seq);
    if (result.after > result.last_seq) {
      // A `since` beyond the end comes from an earlier life of the stream (its numbering was
      // forgotten under memory pressure): the welcome's lower seq tells the client, and it gets
      // the new stream from the start.
      next_seq_ = 1;
      return true;
    }
  }
  for (MessagePtr& m : result.messages) {
    if (m->seq < next_seq_) continue;
    Take(std::move(m), /*live=*/false, out);
  }
  replay_more_ = result.more;
  if (replay_more_) return false;
  // Everything up to last_seq that the read did not return has expired or been evicted.
  if (result.last_seq >= next_seq_) {
    out.Gap(next_seq_, result.last_seq);
    next_seq_ = result.last_seq + 1;
  }
  live_ = true;
  // Live messages dropped while the read was in flight and not covered by it, or a resync asked
  // for while it was in flight (the read may predate the lost link): read again.
  if (max_live_seen_ >= next_seq_ || resync_pending_) {
    resync_pending_ = false;
    return true;
  }
  return false;
}

Sequencer::Failure Sequencer::OnReadFailed() {
  reading_ = false;
  if (!started_) return Failure::kClose;
  // An open connection stays: the store is read again when it is back (a resync).
  live_ = true;
  if (resync_pending_) {
    resync_pending_ = false;
    return Failure::kReadAgain;
  }
  return Failure::kStay;
}

Sequencer::Live Sequencer::Classify(const Message& message) {
  if (!live_) {
    max_live_seen_ = std::max(max_live_seen_, message.seq);
    return Live::kDrop;
  }
  if (message.seq < next_seq_) return Live::kDrop;  // already sent (a read overlapped the publish)
  if (message.seq > next_seq_) {
    max_live_seen_ = message.seq;
    return Live::kRead;
  }
  return Live::kNext;
}

void Sequencer::Take(MessagePtr message, bool live, Output& out) {
  if (message->seq > next_seq_) out.Gap(next_seq_, message->seq - 1);
  next_seq_ = message->seq + 1;
  out.Send(std::move(message), live);
}

bool Sequencer::OnResync() {
  if (reading_) {
    resync_pending_ = true;
    return false;
  }
  return started_;  // from next_seq_: also resumes a replay a failed read interrupted
}

}  // namespace push::edge
