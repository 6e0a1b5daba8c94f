// The Redis schema's two halves agree: what the scripts' prelude encodes (evaluated by a real
// redis-server) is what DecodeChannelMessage reads, and the frame size the read script computes
// is the size of the frame the edge writes.

#include "common/redis/redis_schema.h"

#include <string>
#include <variant>

#include "common/redis/cluster_slots.h"
#include "gtest/gtest.h"
#include "tests/testing/redis_server.h"

namespace push::redis_schema {
namespace {

using push::testing::RedisServer;

class RedisSchemaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RedisServer::Available()) GTEST_SKIP() << "redis-server is not installed";
    ASSERT_TRUE(redis_.running());
  }
  // Evaluates `body` after the prelude; the reply as RedisServer::Command renders it.
  std::string Eval(const std::string& body) { return redis_.Command({"EVAL", Script(body), "0"}); }

  RedisServer redis_;
};

TEST_F(RedisSchemaTest, RoutedMessagesEncodedInLuaDecodeInCpp) {
  // Data may hold newlines (the last field takes the rest).
  std::string payload =
      Eval(R"lua(return routed_message('alice', 42, 'm-1', 1700000000123, 1700000060123,
                                       '{"a":"x\ny"}'))lua");
  ChannelMessage decoded = DecodeChannelMessage(payload);
  auto* routed = std::get_if<RoutedMessage>(&decoded);
  ASSERT_NE(routed, nullptr) << payload;
  EXPECT_EQ(routed->user_id, "alice");
  EXPECT_EQ(routed->message->seq, 42u);
  EXPECT_EQ(routed->message->id, "m-1");
  EXPECT_EQ(routed->message->ts_ms, 1700000000123);
  EXPECT_EQ(routed->message->expires_at, absl::FromUnixMillis(1700000060123));
  EXPECT_EQ(routed->message->data(), "{\"a\":\"x\ny\"}");
}

TEST_F(RedisSchemaTest, CloseCommandsEncodedInLuaDecodeInCpp) {
  ChannelMessage decoded =
      DecodeChannelMessage(Eval("return close_command('bob', '', 4008, 'slow\\nconsumer')"));
  auto* close = std::get_if<CloseCommand>(&decoded);
  ASSERT_NE(close, nullptr);
  EXPECT_EQ(close->user_id, "bob");
  EXPECT_EQ(close->connection_id, "");
  EXPECT_EQ(close->code, 4008);
  EXPECT_EQ(close->reason, "slow\nconsumer");
}

TEST_F(RedisSchemaTest, ChannelsAreTheSameInLuaAndCpp) {
  EXPECT_EQ(Eval("return user_channel('u:1@x')"), UserChannel("u:1@x"));
}

// Everything of one user hashes to one slot, so every per-user script runs on one shard of a
// cluster; the user's channel too, so SPUBLISH from those scripts is allowed.
TEST(RedisSchemaSlotTest, EveryKeyOfAUserAndOfAnInstanceSharesItsSlot) {
  for (std::string user : {"alice", "u-42", "x.y:z@example"}) {
    uint16_t slot = UserSlot(user);
    EXPECT_EQ(redis::KeySlot(user), slot) << "the hash tag is the user id";
    for (const std::string& key :
         {StreamKey(user), MetaKey(user), IdsKey(user), ConnectionsKey(user), UserChannel(user)}) {
      EXPECT_EQ(redis::KeySlot(key), slot) << key;
    }
  }
  std::string inst = "node-a-0123456789abcdef";
  for (const std::string& key :
       {InstanceClientsKey(inst), InstanceIndexKey(inst), InstanceGcKey(inst)}) {
    EXPECT_EQ(redis::KeySlot(key), InstanceSlot(inst)) << key;
  }
  EXPECT_EQ(StreamKey("alice"), "pushd:{alice}:s");
}

TEST_F(RedisSchemaTest, FrameOverheadMatchesTheFramesTheEdgeWrites) {
  int overhead = std::stoi(Eval("return FRAME_OVERHEAD"));
  for (uint64_t seq : {1u, 12345u}) {
    MessagePtr m = MakeMessage(seq, "abc-def", absl::FromUnixMillis(1700000000123),
                               absl::FromUnixMillis(1700000060123), R"({"k":[1,2,3]})");
    size_t fields = std::to_string(seq).size() + m->id.size() + std::to_string(m->ts_ms).size() +
                    m->data().size();
    EXPECT_EQ(static_cast<size_t>(overhead) + fields, m->FrameSize()) << m->Frame();
  }
}

TEST(RedisSchemaDecodeTest, MalformedPayloadsAreRefused) {
  for (const std::string& bad :
       {std::string(), std::string("X"), std::string("Malice\n1\nid\n2"),
        std::string("Malice\nnot-a-seq\nid\n1\n2\ndata"), std::string("Cbob\n\nnot-a-code\nr"),
        std::string("Cbob\n\n70000\nr")}) {
    EXPECT_TRUE(std::holds_alternative<std::monostate>(DecodeChannelMessage(bad))) << bad;
  }
}

}  // namespace
}  // namespace push::redis_schema
