// Redis Cluster's key distribution without a server: KeySlot against the specification's
// examples and slots a real redis-server 7.0 computed (CLUSTER KEYSLOT), CLUSTER SLOTS replies
// as Redis 7 writes them and malformed ones, and MOVED/ASK errors.

#include "common/redis/cluster_slots.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace push::redis {
namespace {

Value Int(int64_t i) {
  Value v;
  v.type = Value::Type::kInteger;
  v.integer = i;
  return v;
}

Value Str(std::string s) {
  Value v;
  v.type = Value::Type::kString;
  v.str = std::move(s);
  return v;
}

Value Nil() { return Value{}; }

Value Error(std::string s) {
  Value v;
  v.type = Value::Type::kError;
  v.str = std::move(s);
  return v;
}

Value Array(std::vector<Value> elements) {
  Value v;
  v.type = Value::Type::kArray;
  v.elements = std::move(elements);
  return v;
}

// A node as Redis 7 lists it: [endpoint, port, id, metadata].
Value Node(Value host, int port, std::string id, std::vector<Value> metadata = {}) {
  return Array({std::move(host), Int(port), Str(std::move(id)), Array(std::move(metadata))});
}

Value Range(int start, int end, std::vector<Value> nodes) {
  std::vector<Value> elements = {Int(start), Int(end)};
  for (Value& n : nodes) elements.push_back(std::move(n));
  return Array(std::move(elements));
}

// The layout `redis-cli --cluster create` gives three primaries with one replica each.
Value ThreeShards() {
  return Array({
      Range(0, 5460, {Node(Str("127.0.0.1"), 7001, "id-a"), Node(Str("127.0.0.1"), 7004, "id-d")}),
      Range(5461, 10922,
            {Node(Str("127.0.0.1"), 7002, "id-b"), Node(Str("127.0.0.1"), 7005, "id-e")}),
      Range(10923, 16383,
            {Node(Str("127.0.0.1"), 7003, "id-c"), Node(Str("127.0.0.1"), 7006, "id-f")}),
  });
}

TEST(KeySlotTest, Crc16KnownAnswer) {
  // The specification's reference value for its CRC16 variant.
  EXPECT_EQ(Crc16("123456789"), 0x31C3);
  EXPECT_EQ(Crc16(""), 0);
  EXPECT_EQ(KeySlot("123456789"), 0x31C3 % kClusterSlots);
}

TEST(KeySlotTest, MatchesRedis) {
  // Computed by redis-server 7.0.15 with CLUSTER KEYSLOT.
  const std::vector<std::pair<std::string, int>> known = {
      {"", 0},       {"foo", 12182}, {"bar", 5061}, {"123456789", 12739}, {"user1000", 3443},
      {"{}", 15257}, {"{a", 10276},  {"a}", 5921},
  };
  for (const auto& [key, slot] : known) EXPECT_EQ(KeySlot(key), slot) << "key '" << key << "'";
}

TEST(KeySlotTest, HashTags) {
  // The specification's examples.
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("{user1000}.followers"));
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("{user1000}.following"), 3443);
  // An empty first tag: the whole key is hashed, the later "{bar}" is not a tag.
  EXPECT_EQ(KeySlot("foo{}{bar}"), 8363);
  EXPECT_NE(KeySlot("foo{}{bar}"), KeySlot("bar"));
  // The tag runs from the first '{' to the first '}' after it: "{bar".
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), KeySlot("{bar"));
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), 4015);
  // Only the first tag counts.
  EXPECT_EQ(KeySlot("foo{bar}{zap}"), KeySlot("bar"));
  // A '}' before the first '{' does not close anything.
  EXPECT_EQ(KeySlot("}{x}"), KeySlot("x"));
  // Binary keys hash byte for byte.
  EXPECT_EQ(KeySlot(std::string("{a\0b}x", 6)), KeySlot(std::string("a\0b", 3)));
}

TEST(ParseClusterSlotsTest, ThreeShardsWithReplicas) {
  absl::StatusOr<SlotMap> map = ParseClusterSlots(ThreeShards(), "127.0.0.1");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->assigned_slots(), kClusterSlots);
  ASSERT_EQ(map->shards().size(), 3u);
  const Shard* first = map->ShardForSlot(0);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->primary.host, "127.0.0.1");
  EXPECT_EQ(first->primary.port, 7001);
  EXPECT_EQ(first->primary_id, "id-a");
  ASSERT_EQ(first->replicas.size(), 1u);
  EXPECT_EQ(first->replicas[0].port, 7004);
  EXPECT_EQ(map->ShardForSlot(5460), first);
  EXPECT_EQ(map->ShardForSlot(5461)->primary.port, 7002);
  EXPECT_EQ(map->ShardForSlot(16383)->primary.port, 7003);
  EXPECT_EQ(map->ShardIndex(10923), 2);
}

TEST(ParseClusterSlotsTest, APrimaryWithSeveralRangesIsOneShard) {
  // Slots 0-99 and 200-299 on one primary (after a reshard), 100-199 on another; the second
  // listing adds a replica the first did not have.
  Value reply = Array({
      Range(0, 99, {Node(Str("10.0.0.1"), 7001, "id-a"), Node(Str("10.0.0.4"), 7004, "id-d")}),
      Range(100, 199, {Node(Str("10.0.0.2"), 7002, "id-b")}),
      Range(200, 299,
            {Node(Str("10.0.0.1"), 7001, "id-a"), Node(Str("10.0.0.4"), 7004, "id-d"),
             Node(Str("10.0.0.5"), 7005, "id-e")}),
  });
  absl::StatusOr<SlotMap> map = ParseClusterSlots(reply, "10.0.0.1");
  ASSERT_TRUE(map.ok()) << map.status();
  ASSERT_EQ(map->shards().size(), 2u);
  EXPECT_EQ(map->assigned_slots(), 300);
  EXPECT_EQ(map->ShardIndex(0), map->ShardIndex(299));
  EXPECT_NE(map->ShardIndex(0), map->ShardIndex(150));
  EXPECT_EQ(map->ShardForSlot(300), nullptr);
  EXPECT_EQ(map->ShardIndex(16383), -1);
  EXPECT_EQ(map->ShardForSlot(0)->replicas.size(), 2u);
}

TEST(ParseClusterSlotsTest, UnknownEndpointIsTheConnectedHost) {
  // NULL (cluster-preferred-endpoint-type unknown-endpoint) and "" (a node that does not know
  // its own address) both mean the host the command was sent to, with the listed port.
  Value reply = Array({
      Range(0, 8191, {Node(Nil(), 7001, "id-a"), Node(Str(""), 7004, "id-d")}),
      Range(8192, 16383, {Node(Str("10.0.0.2"), 7002, "id-b")}),
  });
  absl::StatusOr<SlotMap> map = ParseClusterSlots(reply, "redis.example");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->ShardForSlot(0)->primary.host, "redis.example");
  EXPECT_EQ(map->ShardForSlot(0)->primary.port, 7001);
  EXPECT_EQ(map->ShardForSlot(0)->replicas[0].host, "redis.example");
  EXPECT_EQ(map->ShardForSlot(8192)->primary.host, "10.0.0.2");
  // Without a connected host there is nothing to fall back to.
  EXPECT_FALSE(ParseClusterSlots(reply, "").ok());
}

TEST(ParseClusterSlotsTest, QuestionMarkEndpointUsesTheIpMetadata) {
  // "?" is what Redis 7 writes when hostnames are preferred but none is announced; the
  // metadata then carries the node's ip.
  Value reply = Array({
      Range(0, 16383,
            {Node(Str("?"), 7001, "id-a", {Str("ip"), Str("10.0.0.1")}),
             Node(Str("?"), 7004, "id-d")}),
  });
  absl::StatusOr<SlotMap> map = ParseClusterSlots(reply, "seed.example");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->ShardForSlot(0)->primary.host, "10.0.0.1");
  EXPECT_EQ(map->ShardForSlot(0)->replicas[0].host, "seed.example");
}

TEST(ParseClusterSlotsTest, OlderLayoutsAndExtraFields) {
  // Before Redis 4 a node was [ip, port]; later versions may append fields, which are ignored.
  Value reply = Array({
      Range(0, 16383,
            {Array({Str("10.0.0.1"), Int(7001)}),
             Array({Str("10.0.0.4"), Int(7004), Str("id-d"), Array({}), Str("new")})}),
  });
  absl::StatusOr<SlotMap> map = ParseClusterSlots(reply, "");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->ShardForSlot(0)->primary_id, "");
  EXPECT_EQ(map->ShardForSlot(0)->replicas[0].port, 7004);
}

TEST(ParseClusterSlotsTest, MalformedReplies) {
  const Value a = Node(Str("10.0.0.1"), 7001, "id-a");
  const std::vector<std::pair<std::string, Value>> cases = {
      {"not an array", Str("OK")},
      {"range not an array", Array({Int(0)})},
      {"range without a primary", Array({Array({Int(0), Int(16383)})})},
      {"start not an integer", Array({Array({Str("0"), Int(16383), a})})},
      {"end past the last slot", Array({Range(0, 16384, {a})})},
      {"start after end", Array({Range(10, 9, {a})})},
      {"negative start", Array({Range(-1, 9, {a})})},
      {"slot listed twice", Array({Range(0, 100, {a}), Range(100, 200, {a})})},
      {"node not an array", Array({Range(0, 16383, {Str("10.0.0.1:7001")})})},
      {"node without a port", Array({Range(0, 16383, {Array({Str("10.0.0.1")})})})},
      {"port not an integer", Array({Range(0, 16383, {Array({Str("10.0.0.1"), Str("7001")})})})},
      {"port zero", Array({Range(0, 16383, {Node(Str("10.0.0.1"), 0, "id-a")})})},
      {"port too large", Array({Range(0, 16383, {Node(Str("10.0.0.1"), 65536, "id-a")})})},
      {"endpoint not a string", Array({Range(0, 16383, {Node(Int(1), 7001, "id-a")})})},
      {"id not a string", Array({Range(0, 16383, {Array({Str("10.0.0.1"), Int(7001), Int(5)})})})},
      {"bad replica", Array({Range(0, 16383, {a, Array({Str("10.0.0.4")})})})},
  };
  for (const auto& [name, reply] : cases) {
    absl::StatusOr<SlotMap> map = ParseClusterSlots(reply, "10.0.0.1");
    EXPECT_EQ(map.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(map.status().message().find("CLUSTER SLOTS"), std::string::npos)
        << name << ": " << map.status();
  }
}

TEST(ParseClusterSlotsTest, NoClusterOrNoSlots) {
  // A plain Redis answers with an error; a node that has not joined a cluster lists no slot.
  absl::StatusOr<SlotMap> plain =
      ParseClusterSlots(Error("ERR This instance has cluster support disabled"), "10.0.0.1");
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(plain.status().message().find("cluster support disabled"), std::string::npos);
  EXPECT_EQ(ParseClusterSlots(Array({}), "10.0.0.1").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ParseRedirectTest, MovedAndAsk) {
  std::optional<Redirect> moved = ParseRedirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(moved->kind, Redirect::Kind::kMoved);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->endpoint.host, "127.0.0.1");
  EXPECT_EQ(moved->endpoint.port, 6381);

  std::optional<Redirect> ask = ParseRedirect("ASK 0 redis-2.example:7002");
  ASSERT_TRUE(ask.has_value());
  EXPECT_EQ(ask->kind, Redirect::Kind::kAsk);
  EXPECT_EQ(ask->slot, 0);
  EXPECT_EQ(ask->endpoint.host, "redis-2.example");
  EXPECT_EQ(ask->endpoint.port, 7002);

  std::optional<Redirect> last = ParseRedirect("MOVED 16383 10.1.2.3:65535");
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->slot, 16383);
  EXPECT_EQ(last->endpoint.port, 65535);
}

TEST(ParseRedirectTest, Ipv6AndUnknownHosts) {
  // Redis writes IPv6 addresses without brackets: the port is after the last colon.
  std::optional<Redirect> v6 = ParseRedirect("MOVED 3999 ::1:6381");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->endpoint.host, "::1");
  EXPECT_EQ(v6->endpoint.port, 6381);
  std::optional<Redirect> full = ParseRedirect("ASK 12 2001:db8::7:7000");
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(full->endpoint.host, "2001:db8::7");
  EXPECT_EQ(full->endpoint.port, 7000);
  std::optional<Redirect> bracketed = ParseRedirect("MOVED 1 [::1]:6381");
  ASSERT_TRUE(bracketed.has_value());
  EXPECT_EQ(bracketed->endpoint.host, "::1");
  // An unknown endpoint: the same host the command went to, on this port.
  std::optional<Redirect> unknown = ParseRedirect("MOVED 1 :6381");
  ASSERT_TRUE(unknown.has_value());
  EXPECT_EQ(unknown->endpoint.host, "");
  EXPECT_EQ(unknown->endpoint.port, 6381);
}

TEST(ParseRedirectTest, OtherErrorsAreNotRedirects) {
  for (const char* error : {
           "",
           "ERR unknown command",
           "CLUSTERDOWN Hash slot not served",
           "TRYAGAIN Multiple keys request during rehashing of slot",
           "MOVED",
           "MOVED 3999",
           "MOVED 3999 127.0.0.1",
           "MOVED 3999 127.0.0.1:",
           "MOVED 3999 127.0.0.1:0",
           "MOVED 3999 127.0.0.1:65536",
           "MOVED 3999 127.0.0.1:63x",
           "MOVED 16384 127.0.0.1:6381",
           "MOVED -1 127.0.0.1:6381",
           "MOVED x 127.0.0.1:6381",
           "MOVED 3999 127.0.0.1:6381 extra",
           "MOVED 3999 [::1:6381",
           "moved 3999 127.0.0.1:6381",
           "ASKING 3999 127.0.0.1:6381",
       }) {
    EXPECT_FALSE(ParseRedirect(error).has_value()) << "'" << error << "'";
  }
}

}  // namespace
}  // namespace push::redis
