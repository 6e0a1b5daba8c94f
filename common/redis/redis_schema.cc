#include "common/redis/redis_schema.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/strings.h"
#include "common/redis/cluster_slots.h"
#include "common/redis/redis_client.h"

namespace push::redis_schema {
namespace {

constexpr std::string_view kPrefix = "pushd:";

// The fields of a routed message and of a close command are separated by '\n'; the last field
// (data, reason) may contain any byte. User ids, message ids and connection ids never contain
// '\n' (validated), and neither do the numbers.
constexpr char kLuaPrelude[] = R"lua(
local function user_channel(u) return 'pushd:{'..u..'}:ch' end
-- One Redis only (legacy = '1'): a user's stream, numbering and keys as a pushd before the
-- cluster layout kept them (pushd:s:<u>, pushd:m:<u>, pushd:i:<u>) are renamed into the
-- layout on the user's first touch, unless the user already has keys in it.
local function adopt_legacy(u, legacy)
  if legacy ~= '1' or redis.call('EXISTS', 'pushd:{'..u..'}:m') == 1 then return end
  for _, k in ipairs({'s', 'm', 'i'}) do
    local old = 'pushd:'..k..':'..u
    if redis.call('EXISTS', old) == 1 then redis.call('RENAME', old, 'pushd:{'..u..'}:'..k) end
  end
end
local function routed_message(u, seq, id, ts, expires, data)
  return 'M'..u..'\n'..seq..'\n'..id..'\n'..ts..'\n'..expires..'\n'..data
end
local function close_command(u, conn, code, reason)
  return 'C'..u..'\n'..conn..'\n'..code..'\n'..reason
end
)lua";

}  // namespace

namespace {

std::string Join(std::string_view a, std::string_view b, std::string_view c = {}) {
  std::string out;
  out.reserve(a.size() + b.size() + c.size());
  out.append(a).append(b).append(c);
  return out;
}

}  // namespace

namespace {
std::string Tagged(std::string_view tag, std::string_view suffix) {
  std::string out;
  out.reserve(kPrefix.size() + tag.size() + suffix.size() + 2);
  out.append(kPrefix).append("{").append(tag).append("}").append(suffix);
  return out;
}
}  // namespace

std::string StreamKey(std::string_view user_id) { return Tagged(user_id, ":s"); }
std::string MetaKey(std::string_view user_id) { return Tagged(user_id, ":m"); }
std::string IdsKey(std::string_view user_id) { return Tagged(user_id, ":i"); }
std::string ConnectionsKey(std::string_view user_id) { return Tagged(user_id, ":c"); }
std::string DevicesKey(std::string_view user_id) { return Tagged(user_id, ":d"); }
std::string UserChannel(std::string_view user_id) { return Tagged(user_id, ":ch"); }
std::string InstanceClientsKey(std::string_view instance) { return Tagged(instance, ":ic"); }
std::string InstanceIndexKey(std::string_view instance) { return Tagged(instance, ":ix"); }
std::string InstanceGcKey(std::string_view instance) { return Tagged(instance, ":gc"); }
std::string LeasesKey() { return Join(kPrefix, "leases"); }
std::string PresenceLogKey() { return Tagged("presence", ":log"); }
std::string PresenceCounterKey() { return Tagged("presence", ":n"); }
std::string PresenceUsersKey() { return Tagged("presence", ":users"); }
std::string PresenceLeavingKey() { return Tagged("presence", ":leaving"); }
std::string PresenceLastNodeKey() { return Tagged("presence", ":lastnode"); }
std::string PresenceInstancesKey() { return Tagged("presence", ":insts"); }
std::string PresenceInstanceKey(std::string_view instance) {
  return Join(Tagged("presence", ":inst:"), instance);
}
uint16_t PresenceSlot() { return redis::KeySlot(PresenceLogKey()); }
uint16_t UserSlot(std::string_view user_id) { return redis::KeySlot(StreamKey(user_id)); }
uint16_t InstanceSlot(std::string_view instance) {
  return redis::KeySlot(InstanceClientsKey(instance));
}

std::string ConnectionField(std::string_view instance, std::string_view connection_id) {
  return Join(instance, "\n", connection_id);
}
std::string ClientField(std::string_view user_id, std::string_view connection_id) {
  return Join(user_id, "\n", connection_id);
}

std::pair<std::string_view, std::string_view> SplitShebang(std::string_view script) {
  if (script.substr(0, 2) != "#!") return {{}, script};
  size_t end = script.find('\n');
  end = end == std::string_view::npos ? script.size() : end + 1;
  return {script.substr(0, end), script.substr(end)};
}

std::string Script(std::string_view script) {
  // A message's frame is its header (type, seq, id, ts) + data + "}" (common/delivery/message.h):
  // with an empty id and data and one-digit seq and ts, what remains is the fixed part.
  MessagePtr probe = MakeMessage(0, "", absl::UnixEpoch(), absl::UnixEpoch(), "");
  size_t overhead = probe->FrameSize() - 2;  // less the seq "0" and the ts "0"
  auto [shebang, body] = SplitShebang(script);
  return absl::StrCat(ToAbsl(shebang), kLuaPrelude, "local FRAME_OVERHEAD = ", overhead, "\n",
                      ToAbsl(body));
}

std::string ScriptSha(std::string_view script) {
  return redis::Connection::ScriptSha(Script(script));
}

ChannelMessage DecodeChannelMessage(std::string_view payload) {
  if (payload.empty()) return std::monostate{};
  const char kind = payload[0];
  absl::string_view body = ToAbsl(payload.substr(1));
  if (kind == 'M') {
    // user \n seq \n id \n ts_ms \n expires_ms \n data
    std::vector<absl::string_view> f = absl::StrSplit(body, absl::MaxSplits('\n', 5));
    uint64_t seq = 0;
    int64_t ts = 0, expires = 0;
    if (f.size() != 6 || !absl::SimpleAtoi(f[1], &seq) || !absl::SimpleAtoi(f[3], &ts) ||
        !absl::SimpleAtoi(f[4], &expires)) {
      return std::monostate{};
    }
    return RoutedMessage{std::string(ToStd(f[0])),
                         MakeMessage(seq, std::string(f[2]), absl::FromUnixMillis(ts),
                                     absl::FromUnixMillis(expires), ToStd(f[5]))};
  }
  if (kind == 'C') {
    // user \n connection (empty = all) \n code \n reason
    std::vector<absl::string_view> f = absl::StrSplit(body, absl::MaxSplits('\n', 3));
    uint32_t code = 0;
    if (f.size() != 4 || !absl::SimpleAtoi(f[2], &code) || code > 0xffff) {
      return std::monostate{};
    }
    return CloseCommand{std::string(ToStd(f[0])), std::string(ToStd(f[1])),
                        static_cast<uint16_t>(code), std::string(ToStd(f[3]))};
  }
  return std::monostate{};
}

}  // namespace push::redis_schema
