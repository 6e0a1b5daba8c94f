#pragma once

// What pushd keeps in Redis and sends through it, in one place: the key layout (for C++ and, as
// a prelude every script starts with, for Lua) and the formats of what a node publishes to
// another (routed messages and close commands), encoded by the scripts and decoded here.
//
// Keys (all under "pushd:"):
//   s:<user>   stream of messages, entry ids 0-<seq>, fields i (id) t (ts ms) e (expiry ms) d
//   m:<user>   hash: seq (last assigned), cur (delivered cursor); never expires
//   i:<user>   hash: message_id -> seq (idempotency keys)
//   c:<user>   hash: "<instance>\n<connection_id>" -> "" (where the user's connections are)
//   ic:<inst>  hash: "<user>\n<connection_id>" -> client info (ListClients)
//   a:<inst>   string with a short ttl: the instance is alive (heartbeat)
//   nodes      set of instances
//   channel ch:<inst>: routed messages and close commands for the connections of one instance.
//
// Why a Redis Stream per user: entries are ordered by their id, so with explicit ids 0-<seq> a
// replay is one XRANGE from (0-<since>, XADD MAXLEN trims to --history_size in the same call,
// and small streams are stored compactly (listpacks). The seq counter lives in m:<user> so it
// survives a purge (numbering continues, like the memory store).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/delivery/message.h"

namespace push::redis_schema {

std::string StreamKey(std::string_view user_id);
std::string MetaKey(std::string_view user_id);
std::string IdsKey(std::string_view user_id);
std::string ConnectionsKey(std::string_view user_id);
std::string InstanceClientsKey(std::string_view instance);
std::string AliveKey(std::string_view instance);
std::string NodesKey();
std::string Channel(std::string_view instance);

// The field of a connection in ConnectionsKey(user) ("<instance>\n<connection_id>") and in
// InstanceClientsKey(instance) ("<user>\n<connection_id>").
std::string ConnectionField(std::string_view instance, std::string_view connection_id);
std::string ClientField(std::string_view user_id, std::string_view connection_id);

// `script` preceded by the Lua prelude: key_s(u), key_m(u), key_i(u), key_c(u), key_ic(inst),
// key_a(inst), key_nodes(), channel(inst) for the layout above; routed_message(u, seq, id, ts,
// expires, data) and close_command(u, conn, code, reason) for what goes on a channel; and
// FRAME_OVERHEAD, the bytes of a message's /ws frame besides its seq, id, ts and data.
std::string Script(std::string_view script);

// What arrives on an instance's channel.
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
