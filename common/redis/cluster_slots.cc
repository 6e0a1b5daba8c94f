#include "common/redis/cluster_slots.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/strings.h"

namespace push::redis {
namespace {

// CRC16 with the CCITT polynomial x^16 + x^12 + x^5 + 1 (0x1021), initial value 0, most
// significant bit first, no final XOR: the variant the Redis Cluster specification names
// (XMODEM). The table holds the CRC of each byte value shifted into an empty register, so the
// loop below handles a byte per step instead of a bit.
constexpr std::array<uint16_t, 256> MakeCrc16Table() {
  std::array<uint16_t, 256> table{};
  for (int byte = 0; byte < 256; ++byte) {
    uint16_t crc = static_cast<uint16_t>(byte << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
    table[byte] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = MakeCrc16Table();

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed CLUSTER SLOTS reply: ", ToAbsl(what)));
}

bool IsText(const Value& v) {
  return v.type == Value::Type::kString || v.type == Value::Type::kStatus;
}

// The "ip" entry of a node's metadata (a flat [key, value, ...] array in RESP2), or "".
std::string_view MetadataIp(const Value& node) {
  if (node.elements.size() < 4 || node.elements[3].type != Value::Type::kArray) return {};
  const auto& kv = node.elements[3].elements;
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    if (IsText(kv[i]) && kv[i].str == "ip" && IsText(kv[i + 1])) return kv[i + 1].str;
  }
  return {};
}

// One node of a slot range: [endpoint, port, id, metadata, ...].
absl::Status ReadNode(const Value& node, std::string_view connected_host, std::string_view where,
                      Endpoint* endpoint, std::string* id) {
  if (node.type != Value::Type::kArray || node.elements.size() < 2) {
    return Malformed(absl::StrCat(ToAbsl(where), " is not an array of at least endpoint, port"));
  }
  const Value& host = node.elements[0];
  const Value& port = node.elements[1];
  if (!host.is_nil() && !IsText(host)) {
    return Malformed(absl::StrCat(ToAbsl(where), "'s endpoint is not a string"));
  }
  if (port.type != Value::Type::kInteger || port.integer <= 0 || port.integer > 65535) {
    return Malformed(absl::StrCat(ToAbsl(where), "'s port is not an integer in 1..65535"));
  }
  std::string_view resolved = host.str;
  if (resolved == "?") resolved = MetadataIp(node);
  if (resolved.empty()) resolved = connected_host;
  if (resolved.empty()) {
    return Malformed(
        absl::StrCat(ToAbsl(where), " has no endpoint and the connected host is not known"));
  }
  endpoint->host = std::string(resolved);
  endpoint->port = static_cast<int>(port.integer);
  endpoint->db = 0;  // a cluster has database 0 only
  id->clear();
  if (node.elements.size() >= 3) {
    if (!IsText(node.elements[2])) {
      return Malformed(absl::StrCat(ToAbsl(where), "'s node id is not a string"));
    }
    *id = node.elements[2].str;
  }
  return absl::OkStatus();
}

bool SameAddress(const Endpoint& a, const Endpoint& b) {
  return a.host == b.host && a.port == b.port;
}

}  // namespace

uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char c : data) {
    crc = static_cast<uint16_t>((crc << 8) ^ kCrc16Table[((crc >> 8) ^ c) & 0xff]);
  }
  return crc;
}

uint16_t KeySlot(std::string_view key) {
  // Only the first '{' opens a tag, and the first '}' after it closes it; an empty tag ("{}")
  // means no tag at all, so the whole key is hashed.
  if (size_t open = key.find('{'); open != std::string_view::npos) {
    if (size_t close = key.find('}', open + 1);
        close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return Crc16(key) & (kClusterSlots - 1);
}

SlotMap::SlotMap() { shard_of_slot_.fill(-1); }

int SlotMap::ShardIndex(uint16_t slot) const {
  return slot < kClusterSlots ? shard_of_slot_[slot] : -1;
}

const Shard* SlotMap::ShardForSlot(uint16_t slot) const {
  int index = ShardIndex(slot);
  return index < 0 ? nullptr : &shards_[index];
}

absl::StatusOr<SlotMap> ParseClusterSlots(const Value& reply, std::string_view connected_host) {
  if (reply.type == Value::Type::kError) {
    // Typically "ERR This instance has cluster support disabled": a plain Redis behind
    // --redis_cluster, which no retry will fix.
    return absl::FailedPreconditionError(absl::StrCat("CLUSTER SLOTS failed: ", reply.str));
  }
  if (reply.type != Value::Type::kArray) return Malformed("not an array");
  SlotMap map;
  // A primary serving several ranges is listed once per range; its node id (or, from servers
  // that send none, its address) makes them one shard.
  absl::flat_hash_map<std::string, int> shard_by_key;
  for (size_t r = 0; r < reply.elements.size(); ++r) {
    const Value& range = reply.elements[r];
    std::string where = absl::StrCat("range ", r);
    if (range.type != Value::Type::kArray || range.elements.size() < 3) {
      return Malformed(absl::StrCat(where, " is not an array of start, end, primary, ..."));
    }
    const Value& start = range.elements[0];
    const Value& end = range.elements[1];
    if (start.type != Value::Type::kInteger || end.type != Value::Type::kInteger ||
        start.integer < 0 || end.integer >= kClusterSlots || start.integer > end.integer) {
      return Malformed(absl::StrCat(
          where, " does not have integer slots 0 <= start <= end <= ", kClusterSlots - 1));
    }
    Shard node;
    if (absl::Status s = ReadNode(range.elements[2], connected_host, where + "'s primary",
                                  &node.primary, &node.primary_id);
        !s.ok()) {
      return s;
    }
    std::string key = node.primary_id.empty()
                          ? absl::StrCat(node.primary.host, ":", node.primary.port)
                          : node.primary_id;
    auto [it, added] = shard_by_key.try_emplace(key, static_cast<int>(map.shards_.size()));
    if (added) map.shards_.push_back(node);
    Shard& shard = map.shards_[it->second];
    for (size_t i = 3; i < range.elements.size(); ++i) {
      Endpoint replica;
      std::string ignored_id;
      if (absl::Status s =
              ReadNode(range.elements[i], connected_host, absl::StrCat(where, "'s replica ", i - 3),
                       &replica, &ignored_id);
          !s.ok()) {
        return s;
      }
      bool known = false;
      for (const Endpoint& e : shard.replicas) known = known || SameAddress(e, replica);
      if (!known) shard.replicas.push_back(std::move(replica));
    }
    for (int64_t slot = start.integer; slot <= end.integer; ++slot) {
      if (map.shard_of_slot_[slot] >= 0) {
        return Malformed(absl::StrCat("slot ", slot, " is listed twice"));
      }
      map.shard_of_slot_[slot] = static_cast<int16_t>(it->second);
    }
    map.assigned_ += static_cast<int>(end.integer - start.integer + 1);
  }
  if (map.assigned_ == 0) {
    // A node that has not joined a cluster yet (or one whose slots were all removed).
    return absl::FailedPreconditionError("CLUSTER SLOTS assigns no slot to any node");
  }
  return map;
}

std::optional<Redirect> ParseRedirect(std::string_view error) {
  absl::string_view rest = ToAbsl(error);
  Redirect redirect;
  if (absl::ConsumePrefix(&rest, "MOVED ")) {
    redirect.kind = Redirect::Kind::kMoved;
  } else if (absl::ConsumePrefix(&rest, "ASK ")) {
    redirect.kind = Redirect::Kind::kAsk;
  } else {
    return std::nullopt;
  }
  size_t space = rest.find(' ');
  if (space == absl::string_view::npos) return std::nullopt;
  uint32_t slot = 0;
  if (!absl::SimpleAtoi(rest.substr(0, space), &slot) || slot >= kClusterSlots) {
    return std::nullopt;
  }
  redirect.slot = static_cast<uint16_t>(slot);
  absl::string_view address = rest.substr(space + 1);
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || address.find(' ') != absl::string_view::npos) {
    return std::nullopt;
  }
  int port = 0;
  if (!ParsePort(ToStd(address.substr(colon + 1)), &port)) {
    return std::nullopt;
  }
  absl::string_view host = address.substr(0, colon);
  if (absl::ConsumePrefix(&host, "[") && !absl::ConsumeSuffix(&host, "]")) return std::nullopt;
  redirect.endpoint.host = std::string(host);
  redirect.endpoint.port = port;
  redirect.endpoint.db = 0;
  return redirect;
}

}  // namespace push::redis
