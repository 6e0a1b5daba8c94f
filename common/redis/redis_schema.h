#pragma once

// What pushd keeps in Redis and sends through it, in one place: the key layout (for C++ and, as
// a prelude every script starts with, for Lua) and the formats of what a node publishes to
// another (routed messages and close commands), encoded by the scripts and decoded here.
//
// The same layout serves one Redis (--redis) and a Redis Cluster (--redis_cluster). Everything
// of one user shares the hash tag {<user>}, so it lives in one slot and every per-user script
// runs on one shard; everything of one pushd instance shares {<instance>}.
//
//   pushd:{<user>}:s    stream of messages, entry ids 0-<seq>, fields i (id) t (ts ms)
//                       e (expiry ms) d (data)
//   pushd:{<user>}:m    hash: seq (last assigned), cur (delivered cursor), com (last committed,
//                       --redis_wait_replicas only; absent = every seq is), w and a (written and
//                       acked marks of the connections without a device, for receipts); never
//                       expires
//   pushd:{<user>}:d    hash: device_id -> "<cursor> <written> <acked> <last activity ms>" (the
//                       user's devices, at most --max_devices_per_user); expires --device_ttl
//                       after the last activity of any of them
//   pushd:{<user>}:i    hash: message_id -> seq (idempotency keys)
//   pushd:{<user>}:c    hash: "<instance>\n<connection_id>" -> "" (the user's connections)
//   pushd:{<user>}:ch   channel: the user's messages and close commands, to every instance
//                       holding a connection of the user (SPUBLISH/SSUBSCRIBE on a cluster,
//                       PUBLISH/SUBSCRIBE on one Redis)
//   pushd:{<inst>}:ic   hash: "<user>\n<connection_id>" -> client info (ListClients)
//   pushd:{<inst>}:ix   sorted set, all scores 0: "<user>\n<connection_id>" (ListClients pages)
//   pushd:{<inst>}:gc   string: a node is removing the dead instance's entries
//   pushd:leases        hash: instance -> lease end (Redis server time, ms)
//
// Presence events (CONTRACT §6; common/redis/redis_presence.h) are one log for the whole
// cluster, so all of it shares the hash tag {presence} and every presence script is one atomic
// step on one shard:
//   pushd:{presence}:log       stream of events, entry ids <cursor>-0, fields k (kind) u (user)
//                              c (connection) d (device) n (node) r (reason) t (at, Redis ms);
//                              the empty ones left out
//   pushd:{presence}:n         string: the newest cursor (numbering goes on after a trim)
//   pushd:{presence}:users     hash: user -> live connections cluster-wide (0: leaving)
//   pushd:{presence}:leaving   sorted set: user -> when OFFLINE falls due (Redis ms)
//   pushd:{presence}:lastnode  hash: leaving user -> the node of its last connection
//   pushd:{presence}:insts     hash: instance -> presence lease end (Redis ms)
//   pushd:{presence}:inst:<i>  hash: connection_id -> "user\ndevice\nnode" (what instance i
//                              reported open: what a lost node's DISCONNECTEDs are made from)
//
// Why a Redis Stream per user: entries are ordered by their id, so with explicit ids 0-<seq> a
// replay is one XRANGE from (0-<since>, XADD MAXLEN trims to --history_size in the same call,
// and small streams are stored compactly (listpacks). The seq counter lives in m so it survives a
// purge (numbering continues, like the memory store).
//
// An older pushd (before the cluster layout) kept pushd:s:<user>, pushd:m:<user> and
// pushd:i:<user>: on one Redis, the store's scripts rename them into this layout on the user's
// first append, read or purge (adopt_legacy in the prelude). Its presence keys (pushd:c:*,
// pushd:ic:*, pushd:a:*, pushd:nodes) are not read; those with a ttl expire by themselves.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "common/delivery/message.h"

namespace push::redis_schema {

std::string StreamKey(std::string_view user_id);
std::string MetaKey(std::string_view user_id);
std::string IdsKey(std::string_view user_id);
std::string ConnectionsKey(std::string_view user_id);
std::string DevicesKey(std::string_view user_id);
std::string UserChannel(std::string_view user_id);
std::string InstanceClientsKey(std::string_view instance);
std::string InstanceIndexKey(std::string_view instance);
std::string InstanceGcKey(std::string_view instance);
std::string LeasesKey();
std::string PresenceLogKey();
std::string PresenceCounterKey();
std::string PresenceUsersKey();
std::string PresenceLeavingKey();
std::string PresenceLastNodeKey();
std::string PresenceInstancesKey();
std::string PresenceInstanceKey(std::string_view instance);
// The slot of every presence key.
uint16_t PresenceSlot();
// The hash slot of every key of the user, and of every key of the instance.
uint16_t UserSlot(std::string_view user_id);
uint16_t InstanceSlot(std::string_view instance);

// The field of a connection in ConnectionsKey(user) ("<instance>\n<connection_id>") and its
// member in InstanceClientsKey/InstanceIndexKey(instance) ("<user>\n<connection_id>"; byte order
// of these is (user, connection) order, since '\n' sorts before every character of an id).
std::string ConnectionField(std::string_view instance, std::string_view connection_id);
std::string ClientField(std::string_view user_id, std::string_view connection_id);

// `script` preceded by the Lua prelude: routed_message(u, seq, id, ts, expires, data) and
// close_command(u, conn, code, reason) for what goes on a channel; user_channel(u);
// adopt_legacy(u, legacy) for keys of an older pushd; and
// FRAME_OVERHEAD, the bytes of a message's /ws frame besides its seq, id, ts and data. A script
// that starts with a shebang line (`#!lua flags=...`, Redis 7) keeps it first.
std::string Script(std::string_view script);
// A script's shebang line (with its '\n'; empty when there is none) and the rest.
std::pair<std::string_view, std::string_view> SplitShebang(std::string_view script);
// The EVALSHA digest of Script(script): what the store's and the directory's scripts are run by.
std::string ScriptSha(std::string_view script);

// What arrives on a user's channel.
struct RoutedMessage {
  std::string user_id;
  MessagePtr message;
};
struct CloseCommand {
  std::string user_id;
  std::string connection_id;  // empty: all of the user's
  uint16_t code = 0;
  std::string reason;
};
// monostate: malformed (logged by the caller).
using ChannelMessage = std::variant<std::monostate, RoutedMessage, CloseCommand>;
ChannelMessage DecodeChannelMessage(std::string_view payload);

}  // namespace push::redis_schema
