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
#include "common/message.h"

namespace push::store {

struct AppendRequest {
  std::string user_id;
  std::shared_ptr<const std::string> payload;  // already validated JSON; shared, not copied
  std::string message_id;  // empty = the store makes one
  absl::Duration ttl;      // > 0
};

struct AppendResult {
  MessagePtr message;      // the stored message; for a duplicate, the first one
  bool duplicate = false;  // message_id was already in the user's retained stream
  // Set when the store also routed the message to the user's connections (Redis: one script
  // appends and publishes); otherwise the caller hands it to the local hub.
  std::optional<uint32_t> delivered;
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

// Streams, delivered cursors and idempotency keys, per user.
//
// Callbacks run either inline or on a store thread; callers must not hold locks that the
// callback takes, and must hop to their own executor if they need one.
class Store {
 public:
  virtual ~Store() = default;

  // Appends to the user's stream and assigns the next seq (1, 2, 3, ... per user).
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
};

}  // namespace push::store
