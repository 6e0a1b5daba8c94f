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
#include "absl/strings/str_cat.h"
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
  // The connection's device (the device_id query parameter); empty = none: the user's shared
  // cursor. A read with a device also counts as the device's activity (--device_ttl).
  std::string device_id;
  // Replay after this seq; unset = after the delivered cursor (the device's when device_id is
  // set: 0 for a device never seen or expired, so everything retained).
  std::optional<uint64_t> after;
  size_t max_messages = 256;
  size_t max_bytes = 1 << 20;  // at least one message is returned when one is there
};

struct ReadResult {
  uint64_t after = 0;                // the seq the read started after (since, or the cursor)
  uint64_t last_seq = 0;             // the user's latest seq when read
  std::vector<MessagePtr> messages;  // increasing seq, unexpired, all > after
  bool more = false;                 // a limit stopped the read before last_seq
};

// How far a message got to one device (or to the user's connections without a device).
enum class Progress {
  // Written to the socket of a connection without ack=1: the written mark and the delivered
  // cursor move (CONTRACT §3 rule 3).
  kWritten,
  // Written to the socket of an ack=1 connection: only the written mark moves; the cursor waits
  // for the ack.
  kWrittenAwaitingAck,
  // Acknowledged by an ack=1 connection: the acked mark, the cursor and the written mark move.
  kAcked,
};

// GetReceipts: the message by its id or by its seq (exactly one; the caller checks).
struct ReceiptsRequest {
  std::string user_id;
  std::string message_id;  // empty: by seq
  uint64_t seq = 0;
};

struct DeviceReceipt {
  std::string device_id;  // empty = the user's connections without a device
  bool acked = false;     // acked mark >= seq; else only the written mark reached it
  uint64_t cursor = 0;    // the device's delivered cursor now
};

struct ReceiptsResult {
  uint64_t seq = 0;
  // Every device whose written or acked mark has reached `seq`, sorted by device_id.
  std::vector<DeviceReceipt> receipts;
};

// The Receipts errors, worded alike by every store.
inline absl::Status NotRetainedError(const std::string& user_id, const std::string& message_id) {
  return absl::NotFoundError(absl::StrCat("message_id '", message_id,
                                          "' is not retained for user '", user_id,
                                          "' (never pushed to this user, expired or evicted)"));
}
inline absl::Status PastLatestError(const std::string& user_id, uint64_t seq, uint64_t last) {
  if (seq == 0) return absl::InvalidArgumentError("seq must be at least 1");
  return absl::InvalidArgumentError(
      absl::StrCat("seq ", seq, " is past the latest seq of user '", user_id, "' (", last, ")"));
}

// How long devices are kept and how many (--device_ttl, --max_devices_per_user).
struct DeviceLimits {
  absl::Duration ttl = absl::Hours(720);  // after the device's last activity
  uint32_t max_per_user = 32;             // the least recently active goes first
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

  // Moves the marks of the user's device (empty: the connections without a device, whose cursor
  // is the user's shared one) forward to `seq` as `progress` says: never backwards, never past
  // the end. Fire and forget. A device's move is its activity (--device_ttl); a user without a
  // stream has nothing to move.
  virtual void Advance(std::string_view user_id, std::string_view device_id, uint64_t seq,
                       Progress progress) = 0;

  // A connection of the device ended: its last activity is now, so --device_ttl counts from
  // here. Only a device still kept: one dropped meanwhile (expired, or pushed out by other devices
  // at --max_devices_per_user) is not brought back by the late end of its connection. Fire and
  // forget; nothing for an empty device_id.
  virtual void TouchDevice(std::string_view user_id, std::string_view device_id) = 0;

  // A connection of the user is closing: the moves Advance batched for the user go out now, so
  // a reconnect, on this node or another, reads the cursor they moved. Nothing when not batched.
  virtual void FlushCursor(std::string_view /*user_id*/) {}

  // The receipts of one retained message (by id) or seq: NOT_FOUND when the message id is not
  // retained, INVALID_ARGUMENT when the seq is past the user's latest.
  virtual void Receipts(ReceiptsRequest request,
                        absl::AnyInvocable<void(absl::StatusOr<ReceiptsResult>)> done) = 0;

  // Drops the user's stored messages and idempotency keys; the cursor (and every device's) jumps
  // to the end.
  // Seq numbering continues, so a client resuming with an old `since` gets a gap, not reuse.
  virtual void Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) = 0;

 protected:
  PublicationSink* sink_ = nullptr;
};

}  // namespace push::store
