// What redis::Connection offers the cluster client (common/redis/cluster_client.h), against a
// real redis-server: Pipeline(), error replies as values, and NotSent() telling a command Redis
// never saw (safe to resend) from one whose answer was lost (it may have run).

#include <signal.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/redis/redis_client.h"
#include "gtest/gtest.h"
#include "tests/testing/ports.h"
#include "tests/testing/redis_server.h"

namespace push::redis {
namespace {

using Result = absl::StatusOr<Value>;

Result Wait(std::future<Result>& f) {
  if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return absl::DeadlineExceededError("the callback did not run");
  }
  return f.get();
}

Result RunOne(Connection& c, std::vector<std::string> argv) {
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  c.Command(std::move(argv), [promise](Result r) { promise->set_value(std::move(r)); });
  return Wait(future);
}

Result RunPipeline(Connection& c, std::vector<std::vector<std::string>> commands) {
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  c.Pipeline(std::move(commands), [promise](Result r) { promise->set_value(std::move(r)); });
  return Wait(future);
}

class RedisConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::RedisServer::Available()) << "redis-server is not installed";
    server_ = std::make_unique<testing::RedisServer>();
    ASSERT_TRUE(server_->running());
  }

  std::unique_ptr<Connection> Connect(ConnectionOptions options) {
    options.endpoint.host = "127.0.0.1";
    options.endpoint.port = server_->port();
    options.name = "test";
    auto c = std::make_unique<Connection>(std::move(options));
    c->Start();
    for (int i = 0; i < 500 && !c->connected(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(c->connected());
    return c;
  }

  std::unique_ptr<testing::RedisServer> server_;
};

TEST_F(RedisConnectionTest, PipelineAnswersWithTheLastReply) {
  std::unique_ptr<Connection> c = Connect({});
  Result r = RunPipeline(*c, {{"SET", "p", "1"}, {"INCR", "p"}, {"GET", "p"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->str, "2");
  // The dropped replies did not shift the ones after them.
  Result after = RunOne(*c, {"GET", "p"});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->str, "2");
  Result empty = RunPipeline(*c, {});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  c->Stop();
}

TEST_F(RedisConnectionTest, ErrorRepliesAsValuesOnlyWhenAsked) {
  std::unique_ptr<Connection> plain = Connect({});
  ConnectionOptions as_values;
  as_values.error_replies_as_values = true;
  std::unique_ptr<Connection> valued = Connect(std::move(as_values));
  ASSERT_TRUE(RunOne(*plain, {"SET", "s", "x"}).ok());

  Result internal = RunOne(*plain, {"LPUSH", "s", "y"});
  EXPECT_EQ(internal.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(internal.status().message().find("WRONGTYPE"), std::string::npos);
  EXPECT_FALSE(NotSent(internal.status()));

  Result value = RunOne(*valued, {"LPUSH", "s", "y"});
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->type, Value::Type::kError);
  EXPECT_EQ(value->str.rfind("WRONGTYPE", 0), 0u) << value->str;
  plain->Stop();
  valued->Stop();
}

TEST_F(RedisConnectionTest, NotSentMarksOnlyCommandsRedisNeverSaw) {
  // Refused at once: nothing listens.
  ConnectionOptions nowhere_options;
  nowhere_options.endpoint = Endpoint{"127.0.0.1", testing::FreeLoopbackPort()};
  Connection nowhere(std::move(nowhere_options));
  nowhere.Start();
  Result refused = RunOne(nowhere, {"PING"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(NotSent(refused.status())) << refused.status();
  nowhere.Stop();

  // NOSCRIPT: Redis refused the script before running it.
  const std::string script = "return redis.call('INCR', KEYS[1])";
  ConnectionOptions with_script;
  with_script.scripts = {script};
  std::unique_ptr<Connection> c = Connect(std::move(with_script));
  ASSERT_EQ(server_->Command({"SCRIPT", "FLUSH"}), "OK");
  Result flushed = RunOne(*c, {"EVALSHA", Connection::ScriptSha(script), "1", "n"});
  EXPECT_EQ(flushed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(NotSent(flushed.status())) << flushed.status();
  c->Stop();

  // Written, then no answer (a hung server): the command may have run, so it is not NotSent.
  ConnectionOptions short_timeout;
  short_timeout.command_timeout = absl::Milliseconds(300);
  std::unique_ptr<Connection> hung = Connect(std::move(short_timeout));
  server_->Signal(SIGSTOP);
  Result lost = RunOne(*hung, {"INCR", "n"});
  server_->Signal(SIGCONT);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable) << lost.status();
  EXPECT_FALSE(NotSent(lost.status())) << lost.status();
  EXPECT_FALSE(NotSent(absl::OkStatus()));
  EXPECT_FALSE(Overloaded(lost.status()));
  hung->Stop();
}

TEST_F(RedisConnectionTest, AFullQueueRefusesAsOverloaded) {
  ConnectionOptions one;
  one.max_queued = 1;
  std::unique_ptr<Connection> c = Connect(std::move(one));
  server_->Signal(SIGSTOP);  // the first command stays unanswered
  auto first = std::make_shared<std::promise<Result>>();
  std::future<Result> first_result = first->get_future();
  c->Command({"PING"}, [first](Result r) { first->set_value(std::move(r)); });
  // Written by now (counted in flight rather than between the queue and the count).
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Result second = RunOne(*c, {"PING"});
  server_->Signal(SIGCONT);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_TRUE(NotSent(second.status())) << second.status();
  EXPECT_TRUE(Overloaded(second.status())) << second.status();
  Result answered = Wait(first_result);
  EXPECT_TRUE(answered.ok()) << answered.status();
  c->Stop();
}

}  // namespace
}  // namespace push::redis
