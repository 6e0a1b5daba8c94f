// The Redis addresses pushd takes on its command line: --redis (ParseUrl) and the seed list of
// --redis_cluster (ParseSeeds, CONTRACT §7).

#include "common/redis/redis_url.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace push::redis {
namespace {

std::vector<std::string> Rendered(const std::vector<Endpoint>& endpoints) {
  std::vector<std::string> out;
  for (const Endpoint& e : endpoints) out.push_back(e.host + "|" + std::to_string(e.port));
  return out;
}

TEST(ParseSeedsTest, ReadsEveryHostAndPortInOrder) {
  absl::StatusOr<std::vector<Endpoint>> seeds =
      ParseSeeds("127.0.0.1:7000,redis-0.redis.svc:6379,10.1.2.3:30001");
  ASSERT_TRUE(seeds.ok()) << seeds.status();
  EXPECT_EQ(Rendered(*seeds), (std::vector<std::string>{"127.0.0.1|7000", "redis-0.redis.svc|6379",
                                                        "10.1.2.3|30001"}));
  for (const Endpoint& e : *seeds) EXPECT_EQ(e.db, 0);
}

TEST(ParseSeedsTest, OneSeedIsEnough) {
  absl::StatusOr<std::vector<Endpoint>> seeds = ParseSeeds("localhost:7001");
  ASSERT_TRUE(seeds.ok()) << seeds.status();
  EXPECT_EQ(Rendered(*seeds), (std::vector<std::string>{"localhost|7001"}));
}

TEST(ParseSeedsTest, IgnoresSpacesAroundEntries) {
  absl::StatusOr<std::vector<Endpoint>> seeds = ParseSeeds(" 127.0.0.1:7000 ,\t127.0.0.1:7001 ");
  ASSERT_TRUE(seeds.ok()) << seeds.status();
  EXPECT_EQ(Rendered(*seeds), (std::vector<std::string>{"127.0.0.1|7000", "127.0.0.1|7001"}));
}

TEST(ParseSeedsTest, ReadsBracketedIpv6Hosts) {
  absl::StatusOr<std::vector<Endpoint>> seeds = ParseSeeds("[::1]:7000,[fe80::1:2]:7001");
  ASSERT_TRUE(seeds.ok()) << seeds.status();
  EXPECT_EQ(Rendered(*seeds), (std::vector<std::string>{"::1|7000", "fe80::1:2|7001"}));
}

TEST(ParseSeedsTest, KeepsDuplicatesAsGiven) {
  // Harmless: the client asks each node once per refresh anyway.
  absl::StatusOr<std::vector<Endpoint>> seeds = ParseSeeds("a:1,a:1");
  ASSERT_TRUE(seeds.ok()) << seeds.status();
  EXPECT_EQ(seeds->size(), 2u);
}

TEST(ParseSeedsTest, RejectsMalformedListsNamingTheEntry) {
  struct Case {
    std::string input;
    std::string mentions;  // part of the error message
  };
  const std::vector<Case> cases = {
      {"", "no Redis Cluster seed"},
      {"   ", "no Redis Cluster seed"},
      {"127.0.0.1", "'127.0.0.1'"},        // no port
      {"127.0.0.1:7000,", "empty entry"},  // trailing comma
      {",127.0.0.1:7000", "empty entry"},  // leading comma
      {"a:1,,b:2", "empty entry"},         // empty in the middle
      {":7000", "no host"},                // no host
      {"[]:7000", "no host"},              // empty brackets
      {"host:", "bad port ''"},            // empty port
      {"host:0", "bad port '0'"},          // out of range
      {"host:65536", "bad port '65536'"},  // out of range
      {"host:70x", "bad port '70x'"},      // not a number
      {"host:-1", "bad port '-1'"},        // negative
      {"::1:7000", "brackets"},            // IPv6 without brackets is ambiguous
      {"[::1:7000", "without ']'"},        // unclosed bracket
      {"redis://h:7000", "not a URL"},     // --redis's form is not a seed
      {"a:1,b c:2", "'b c:2'"},            // a space inside the host
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<Endpoint>> seeds = ParseSeeds(c.input);
    ASSERT_FALSE(seeds.ok()) << "'" << c.input << "' parsed";
    EXPECT_EQ(seeds.status().code(), absl::StatusCode::kInvalidArgument) << c.input;
    EXPECT_NE(seeds.status().message().find(c.mentions), std::string::npos)
        << "'" << c.input << "': " << seeds.status().message();
  }
}

TEST(ParseUrlTest, ReadsHostPortAndDatabase) {
  absl::StatusOr<Endpoint> e = ParseUrl("redis://127.0.0.1:6380/2");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 6380);
  EXPECT_EQ(e->db, 2);
  absl::StatusOr<Endpoint> defaults = ParseUrl("redis://localhost");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->port, 6379);
  EXPECT_EQ(defaults->db, 0);
  EXPECT_FALSE(ParseUrl("127.0.0.1:6379").ok());
  EXPECT_TRUE(defaults->password.empty());
  EXPECT_TRUE(AuthCommand(*defaults).empty());
}

TEST(ParseUrlTest, ReadsCredentialsPercentDecoded) {
  absl::StatusOr<Endpoint> e = ParseUrl("redis://:pa%40ss%3Aword@redis.example:6380/1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "redis.example");
  EXPECT_EQ(e->port, 6380);
  EXPECT_EQ(e->db, 1);
  EXPECT_EQ(e->user, "");
  EXPECT_EQ(e->password, "pa@ss:word");
  EXPECT_EQ(AuthCommand(*e), (std::vector<std::string>{"AUTH", "pa@ss:word"}));
  e = ParseUrl("redis://pushd:secret@[::1]:7000");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->user, "pushd");
  EXPECT_EQ(AuthCommand(*e), (std::vector<std::string>{"AUTH", "pushd", "secret"}));
  // A user without a password, no ':' before the '@', a bad escape: errors that never echo the
  // credentials.
  // A mistyped URL: the host forgotten, the password where the database goes.
  for (const char* bad : {"redis://pushd:@h:1", "redis://secret@h:1", "redis://:s%zzecret@h:1",
                          "redis://:secret%4@h:1", "redis://pushd:secret", "redis://h/secret"}) {
    absl::StatusOr<Endpoint> r = ParseUrl(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(std::string(r.status().message()).find("secret"), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace push::redis
