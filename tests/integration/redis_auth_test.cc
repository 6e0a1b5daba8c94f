// A Redis that needs a password (requirepass, or an ACL user): pushd AUTHs on every connection it
// opens, from the --redis URL (redis://[user]:password@host:port) or from --redis_password_file
// (with --redis_user), on one Redis and on every node of a Redis Cluster. A wrong or missing
// password leaves pushd not ready, with the reason in its log, and never echoes the password.

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/redis/redis_schema.h"
#include "gtest/gtest.h"
#include "tests/testing/node_checks.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/redis_cluster.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/temp_files.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

using std::chrono::seconds;

// A message pushed through `node` reaches a WebSocket on it: the links to Redis work.
void ExpectDelivers(const PushdProcess& node, const std::string& user) {
  ASSERT_TRUE(WaitFor([&] { return HttpRequest(node.ws_port(), "GET", "/readyz").status == 200; },
                      seconds(20)))
      << node.Stderr();
  auto ws = ConnectUser(node, user);
  ASSERT_TRUE(ws) << "cannot connect " << user;
  auto stub = node.Stub();
  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*stub, user, R"({"auth":"ok"})", &res).ok());
  EXPECT_EQ(res.seq(), 1u);
  std::string data;
  EXPECT_EQ(NextSeq(*ws, &data), 1u);
  EXPECT_EQ(data, R"({"auth":"ok"})");
}

// Stays not ready (503) and says why in its log, without the password.
void ExpectRefused(const PushdProcess& node, const std::string& reason,
                   const std::string& password) {
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(node.Stderr(), reason); }, seconds(20)))
      << node.Stderr();
  EXPECT_EQ(HttpRequest(node.ws_port(), "GET", "/readyz").status, 503);
  if (!password.empty()) EXPECT_FALSE(absl::StrContains(node.Stderr(), password));
}

PushdOptions Captured() {
  PushdOptions o;
  o.capture_stderr = true;
  return o;
}

TEST(RedisAuthTest, OneRedisWithAPasswordFromTheUrlOrAFile) {
  ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
  RedisServer redis;
  ASSERT_TRUE(redis.running());
  const std::string password = "s3cret p@ss";
  ASSERT_TRUE(redis.SetPassword(password));
  const std::string host = "127.0.0.1:" + std::to_string(redis.port());
  {
    // In the URL, percent-encoded (' ' and '@').
    PushdProcess node({"--redis=redis://:s3cret%20p%40ss@" + host}, Captured());
    ASSERT_TRUE(node.started());
    ExpectDelivers(node, "alice");
  }
  {
    TempFile file(password + "\n");  // `echo pw > file`: the newline is not part of it
    PushdProcess node({"--redis=" + redis.url(), "--redis_password_file=" + file.path()},
                      Captured());
    ASSERT_TRUE(node.started());
    ExpectDelivers(node, "bob");
  }
  {
    TempFile file("not-the-password\n");
    PushdProcess node({"--redis=" + redis.url(), "--redis_password_file=" + file.path()},
                      Captured());
    ASSERT_TRUE(node.started());
    ExpectRefused(node, "WRONGPASS", "not-the-password");
  }
  {
    PushdProcess node({"--redis=" + redis.url()}, Captured());
    ASSERT_TRUE(node.started());
    ExpectRefused(node, "NOAUTH", "");
  }
}

TEST(RedisAuthTest, AnAclUser) {
  ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed";
  RedisServer redis;
  ASSERT_TRUE(redis.running());
  ASSERT_EQ(redis.Command({"ACL", "SETUSER", "pushd", "on", ">pushd-pw", "~*", "&*", "+@all"}),
            "OK");
  ASSERT_TRUE(redis.SetPassword("admin-pw"));  // the default user needs a password too
  TempFile file("pushd-pw");
  PushdProcess node(
      {"--redis=" + redis.url(), "--redis_user=pushd", "--redis_password_file=" + file.path()},
      Captured());
  ASSERT_TRUE(node.started());
  ExpectDelivers(node, "carol");
  // Every connection pushd made is the ACL user's: all but this check's own (the default user).
  std::string clients = redis.Command({"CLIENT", "LIST"});
  int lines = 0;
  int as_pushd = 0;
  for (absl::string_view line : absl::StrSplit(clients, '\n', absl::SkipWhitespace())) {
    ++lines;
    if (absl::StrContains(line, " user=pushd ")) ++as_pushd;
  }
  EXPECT_GE(as_pushd, 2) << clients;  // at least the commands and the subscriber links
  EXPECT_EQ(as_pushd, lines - 1) << clients;
}

TEST(RedisAuthTest, EveryNodeOfARedisClusterWithAPassword) {
  ASSERT_TRUE(RedisCluster::Available()) << "redis-server or redis-cli is not installed";
  RedisCluster::Options options;
  options.replicas_per_primary = 0;
  options.password = "cluster-pw";
  RedisCluster cluster(options);
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  TempFile file("cluster-pw\n");
  PushdProcess node({"--redis_cluster=" + cluster.seeds(), "--redis_password_file=" + file.path()},
                    Captured());
  ASSERT_TRUE(node.started());
  // Users on every shard: each shard's connection authenticated.
  const std::vector<std::string> users = {"dave", "erin", "frank", "grace", "heidi", "ivan"};
  std::set<int> primaries;
  for (const std::string& user : users) {
    primaries.insert(cluster.PrimaryOf(redis_schema::UserSlot(user)));
  }
  EXPECT_EQ(primaries.size(), 3u);
  for (const std::string& user : users) {
    SCOPED_TRACE(user);
    ExpectDelivers(node, user);
  }
  PushdProcess refused({"--redis_cluster=" + cluster.seeds()}, Captured());
  ASSERT_TRUE(refused.started());
  ExpectRefused(refused, "NOAUTH", "");
}

}  // namespace
}  // namespace push::testing
