#pragma once

// Redis Cluster's key distribution (CONTRACT §7): which of the 16384 hash slots a key lives in,
// which shard serves each slot (from CLUSTER SLOTS), and the MOVED/ASK redirections a node
// answers with when a command reaches the wrong shard. Pure functions over replies, so the
// cluster client can keep its I/O elsewhere and these stay testable without a server.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/redis/redis_client.h"
#include "common/redis/redis_url.h"

namespace push::redis {

inline constexpr int kClusterSlots = 16384;

// The slot of a key: CRC16 (XMODEM) of the key mod 16384, or of its hash tag, the part between
// the first '{' and the first '}' after it when that part is not empty. Keys that share a tag
// share a slot, which is what lets one script touch several of a user's keys on one shard.
uint16_t KeySlot(std::string_view key);

// The CRC16 behind KeySlot (CCITT polynomial 0x1021, initial value 0, no reflection), exposed
// for its known-answer test.
uint16_t Crc16(std::string_view data);

// One primary and its replicas; the slots it serves are in the SlotMap.
struct Shard {
  Endpoint primary;
  std::string primary_id;  // the node id; empty when the server did not send one
  std::vector<Endpoint> replicas;
};

// Which shard serves each slot, as one node saw it when it answered CLUSTER SLOTS.
class SlotMap {
 public:
  SlotMap();

  // The shard serving `slot`, or null when no node serves it (an incomplete cluster).
  const Shard* ShardForSlot(uint16_t slot) const;
  // Its index in shards(), or -1.
  int ShardIndex(uint16_t slot) const;
  const std::vector<Shard>& shards() const { return shards_; }
  // How many slots have a shard: kClusterSlots once the cluster is fully assigned.
  int assigned_slots() const { return assigned_; }

 private:
  friend absl::StatusOr<SlotMap> ParseClusterSlots(const Value& reply,
                                                   std::string_view connected_host);

  std::vector<Shard> shards_;
  // -1 for an unassigned slot; 16384 shards at most fit an int16_t.
  std::array<int16_t, kClusterSlots> shard_of_slot_;
  int assigned_ = 0;
};

// Reads the reply of CLUSTER SLOTS (Redis 7 layout: one entry per slot range, [start, end,
// primary, replica...], each node [endpoint, port, id, metadata...]; fields past the ones read
// are ignored, as the command's documentation asks of clients). A primary serving several
// ranges is one shard. `connected_host` is the host the command was sent to: Redis reports a
// NULL or "" endpoint for a node whose address it does not know (typically the node answering),
// and the documentation says to use the address the client connected to with the given port.
// A "?" endpoint (hostnames preferred but none announced) falls back to the node's "ip"
// metadata, then to `connected_host`. Errors: the reply is a Redis error (cluster mode off),
// is not shaped as documented, names a slot out of range or a slot twice, or assigns no slot.
absl::StatusOr<SlotMap> ParseClusterSlots(const Value& reply, std::string_view connected_host);

// A redirection answered instead of a command's result.
struct Redirect {
  enum class Kind {
    kMoved,  // the slot has a new owner: update the map, send this and later commands there
    kAsk,    // the slot is migrating: send only this command there, preceded by ASKING
  };
  Kind kind = Kind::kMoved;
  uint16_t slot = 0;
  // The node to ask. An empty host (Redis 7 writes ":port" when it does not know the node's
  // endpoint) means the host the command was sent to.
  Endpoint endpoint;
};

// Parses the text of an error reply, "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381"
// (hiredis has already dropped the leading '-'). The host is everything before the last
// colon, so IPv6 addresses ("::1:6381") work; brackets around it are dropped. nullopt for any
// other error, including a MOVED or ASK that does not parse.
std::optional<Redirect> ParseRedirect(std::string_view error);

}  // namespace push::redis
