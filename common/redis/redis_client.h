#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/redis/redis_url.h"

struct redisContext;
struct redisReply;

namespace push::redis {

// A Redis reply, copied out of hiredis's reply tree so it outlives the connection's buffers.
struct Value {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // kString, kStatus, kError
  std::vector<Value> elements;

  bool is_nil() const { return type == Type::kNil; }
  // The integer, or a decimal string read as one (Lua returns either); 0 otherwise.
  int64_t AsInt() const;
};

// One command on a short-lived blocking connection, for a thread that may block (the cluster
// client's map refresh; the tests' servers). UNAVAILABLE naming host:port when it cannot connect
// or gets no reply; an error reply from Redis comes back as a Value of type kError.
absl::StatusOr<Value> BlockingCommand(const Endpoint& endpoint,
                                      const std::vector<std::string>& argv,
                                      absl::Duration connect_timeout, absl::Duration reply_timeout);

using Callback = absl::AnyInvocable<void(absl::StatusOr<Value>)>;

// Whether a command that failed is known never to have been written to Redis: refused at once
// (not connected, too many waiting), or still queued when the connection went down, or refused
// by Redis with NOSCRIPT before running. Such a command can be sent again without running twice;
// any other UNAVAILABLE from a Connection may come after Redis ran the command.
bool NotSent(const absl::Status& status);
// Whether a command was refused because too many were waiting (ConnectionOptions::max_queued):
// NotSent, but resending soon would only add to the pile.
bool Overloaded(const absl::Status& status);
// Whether a Durable() command ran but fewer replicas than asked acknowledged it in time (or the
// link failed before they did): it may survive on the primary and surface later.
bool ReplicasShort(const absl::Status& status);
// `status` marked ReplicasShort (a caller that rewords one keeps the mark).
absl::Status MarkReplicasShort(absl::Status status);

struct ConnectionOptions {
  Endpoint endpoint;
  std::string name;  // for logs
  // A command not answered within this time breaks the connection (a hung or unreachable Redis
  // fails fast instead of piling up requests).
  absl::Duration command_timeout = absl::Seconds(2);
  absl::Duration connect_timeout = absl::Seconds(1);
  absl::Duration min_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(3);
  // Commands waiting or unanswered; beyond it Command() fails with UNAVAILABLE (bounded memory).
  size_t max_queued = 100000;
  // Lua scripts loaded after every connect, before any other command, so EVALSHA always works
  // (a restarted Redis has an empty script cache).
  std::vector<std::string> scripts;
  // A subscriber connection: Command() takes SUBSCRIBE, SSUBSCRIBE, UNSUBSCRIBE, SUNSUBSCRIBE
  // (answered once every channel named is confirmed, or with the error Redis gave) and PING.
  // Published messages (message, smessage) go to on_message; every confirmation, and every
  // unsubscribe Redis sends by itself (a cluster node that lost the channel's slot), goes to
  // on_subscription with the verb in lower case ("ssubscribe", "sunsubscribe", ...). The
  // subscriptions are gone after a reconnect: on_connect subscribes again.
  bool subscriber = false;
  absl::AnyInvocable<void(std::string_view channel, std::string_view message)> on_message;
  absl::AnyInvocable<void(std::string_view verb, std::string_view channel)> on_subscription;
  // Durable(): a command is answered only once this many replicas acknowledged it (WAIT, one
  // per batch written, covering every command before it), or UNAVAILABLE (ReplicasShort) when
  // fewer did within wait_timeout.
  int wait_replicas = 0;
  absl::Duration wait_timeout = absl::Seconds(1);
  // Run on the connection's thread: after every (re)connect once setup is done, after every
  // disconnect, and about every tick_interval. They may call Command() but must not block.
  absl::AnyInvocable<void()> on_connect;
  absl::AnyInvocable<void()> on_disconnect;
  absl::AnyInvocable<void()> on_tick;
  absl::Duration tick_interval = absl::Seconds(1);
  // Error replies reach the callback as a Value of type kError instead of an INTERNAL status, for
  // callers that act on them (the cluster client follows MOVED and ASK).
  bool error_replies_as_values = false;
};

// One Redis connection driven by hiredis on its own thread: commands are pipelined (everything
// queued goes out in one write, replies are matched in order), so no I/O or gRPC thread ever
// blocks on Redis. It reconnects by itself with exponential backoff and jitter; while it is down
// every command fails at once with UNAVAILABLE. Callbacks run on the connection's thread (or
// inline when the command fails at once) and must not block.
class Connection {
 public:
  explicit Connection(ConnectionOptions options);
  ~Connection();  // Stops the thread; commands still waiting get UNAVAILABLE.

  void Start();
  void Stop();

  void Command(std::vector<std::string> argv, Callback done);
  // Sends `commands` back to back, with no other command between them on the wire: the replies
  // of all but the last are dropped, `done` gets the last one's. For Redis Cluster's ASKING,
  // which applies to the next command on the connection only.
  void Pipeline(std::vector<std::vector<std::string>> commands, Callback done);
  // As Command(), answered only after ConnectionOptions::wait_replicas replicas acknowledged it
  // (as Command() when that is 0). `asking`: ASKING goes right before it (Pipeline's use).
  void Durable(std::vector<std::string> argv, Callback done, bool asking = false);
  bool connected() const { return connected_.load(std::memory_order_acquire); }
  const std::string& name() const { return options_.name; }

  // EVALSHA argv for a script given in ConnectionOptions::scripts.
  static std::string ScriptSha(std::string_view script);

 private:
  // The channels a subscriber's (S)(UN)SUBSCRIBE still waits to see confirmed.
  struct Subscription {
    std::string verb;  // lower case, as Redis names its confirmations
    std::vector<std::string> channels;
  };
  struct Pending {
    Callback done;  // empty for internal commands (setup, subscriber pings)
    absl::Time sent;
    bool setup = false;
    bool durable = false;  // its reply waits for the WAIT after it
    bool wait = false;     // the WAIT of a batch with durable commands
    std::unique_ptr<Subscription> subscription;
  };
  struct Queued {
    std::vector<std::string> argv;
    Callback done;  // empty when the reply is dropped (Pipeline)
    bool durable = false;
  };
  struct Held {
    Callback done;
    Value value;
  };

  // Queues `items` together, or refuses them all (NotSent) through the last one's callback.
  void Enqueue(absl::Span<Queued> items);
  void Run();
  redisContext* Connect();
  // Serves one connected context until it fails or Stop(); returns the reason.
  std::string Serve(redisContext* c);
  bool Dispatch(redisReply* reply, std::string* error);
  // A subscriber's pushed message or confirmation: handled (true), or a reply to match.
  bool DispatchPubSub(redisReply* reply);
  void ReleaseHeld(const redisReply* wait_reply);
  void FailAll(const absl::Status& status);
  // Setup replies are in: commands are taken from now on.
  void SetupDone();
  void Wake();
  void WaitFor(absl::Duration d);

  ConnectionOptions options_;
  std::atomic<bool> connected_{false};  // changed under mu_
  std::atomic<size_t> inflight_count_{0};
  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;
  std::thread thread_;

  absl::Mutex mu_;
  std::vector<Queued> queue_ ABSL_GUARDED_BY(mu_);
  // Only the connection thread touches these.
  std::deque<Pending> inflight_;
  int setup_pending_ = 0;
  // Durable commands' replies waiting for their batch's WAIT, and whether that WAIT is out.
  std::vector<Held> held_;
  bool wait_inflight_ = false;
  std::vector<std::string> script_shas_;
};

}  // namespace push::redis
