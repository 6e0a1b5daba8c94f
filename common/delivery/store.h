#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/delivery/message.h"

namespace push::store {

struct AppendRequest {
  std::string user_id;
  std::shared_ptr<const std::string> payload;  // already validated JSON; shared, not copied
  std::string message_id;                      // empty = the store makes one
  absl::Duration ttl;                          // > 0
};

struct AppendResult {
  MessagePtr message;      // the stored message; for a duplicate, the first one
  bool duplicate = false;  // message_id was already in the user's retained stream
  // The user's connections the new message was published to (every node's, with Redis); 0 for
  // a duplicate, which is not published again.
  uint32_t delivered = 0;
};

struct ReadRequest {
  std::string user_id;
  std::optional<uint64_t> after;  // replay after this seq; unset = after the delivered cursor
  size_t max_messages = 256;
  size_t max_bytes = 1 << 20;  // at least one message is returned when one is there
};

struct ReadResult {
  uint64_t after = 0;                // the seq the read started after (since, or the cursor)
  uint64_t last_seq = 0;             // the user's latest seq when read
  std::vector<MessagePtr> messages;  // increasing seq, unexpired, all > after
  bool more = false;                 // a limit stopped the read before last_seq
};

// Where the store publishes: every new message of a user goes to this process's connections of
// the user through it, by one path whatever the backend (the memory store right after its
// append, Redis from the subscriber that receives what the append script published). The hub.
class PublicationSink {
 public:
  virtual ~PublicationSink() = default;
  // Hands `message` to the user's connections here; returns how many.
  virtual uint32_t OnPublication(std::string_view user_id, const MessagePtr& message) = 0;
};

// Streams, delivered cursors and idempotency keys, per user; and the publication of every new
// message to the connections of its user (the broker of DESIGN.md's delivery core).
//
// Callbacks run either inline or on a store thread; callers must not hold locks that the
// callback takes, and must hop to their own executor if they need one.
class Store {
 public:
  virtual ~Store() = default;

  // Set once, before the first Append (none: messages are stored and reach no connection).
  void SetPublicationSink(PublicationSink* sink) { sink_ = sink; }

  // Appends to the user's stream and assigns the next seq (1, 2, 3, ... per user), then
  // publishes it (not a duplicate) to the user's connections: here through the sink before
  // `done`, on other nodes through the backend.
  virtual void Append(AppendRequest request,
                      absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done) = 0;

  // Retained, unexpired messages after `after` (or after the delivered cursor), in seq order.
  virtual void Read(ReadRequest request,
                    absl::AnyInvocable<void(absl::StatusOr<ReadResult>)> done) = 0;

  // Moves the user's delivered cursor forward to `seq` (never backwards, never past the end).
  virtual void AdvanceCursor(std::string_view user_id, uint64_t seq) = 0;

  // Drops the user's stored messages and idempotency keys; the cursor jumps to the end.
  // Seq numbering continues, so a client resuming with an old `since` gets a gap, not reuse.
  virtual void Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) = 0;

 protected:
  PublicationSink* sink_ = nullptr;
};

}  // namespace push::store
