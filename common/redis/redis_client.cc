#include "common/redis/redis_client.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/types/span.h"
#include "common/base/metrics.h"
#include "common/base/strings.h"
#include "spdlog/spdlog.h"

namespace push::redis {
namespace {

Value Copy(const redisReply* r) {
  Value v;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      v.type = Value::Type::kInteger;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      v.type = Value::Type::kString;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = Value::Type::kStatus;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = Value::Type::kError;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      v.type = Value::Type::kArray;
      v.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) v.elements.push_back(Copy(r->element[i]));
      break;
    default:
      break;
  }
  return v;
}

// The payload that marks a status NotSent().
constexpr absl::string_view kNotSentUrl = "push.redis/not-sent";

absl::Status MarkNotSent(absl::Status status) {
  status.SetPayload(kNotSentUrl, absl::Cord("1"));
  return status;
}

// The payload that marks a status Overloaded().
constexpr absl::string_view kOverloadedUrl = "push.redis/overloaded";

// The payload that marks a status ReplicasShort().
constexpr absl::string_view kReplicasShortUrl = "push.redis/replicas-short";

std::string_view Str(const redisReply* r) { return std::string_view(r->str, r->len); }

// "SSUBSCRIBE" -> "ssubscribe" when argv[0] is one of the subscription verbs, else empty.
std::string SubscriptionVerb(const std::string& command) {
  std::string verb = absl::AsciiStrToLower(command);
  if (verb == "subscribe" || verb == "ssubscribe" || verb == "unsubscribe" ||
      verb == "sunsubscribe") {
    return verb;
  }
  return {};
}

// Calls `f(argc, argv, argvlen)` (a hiredis *Argv function) with `args`.
template <class F>
auto WithArgv(const std::vector<std::string>& args, F f) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  return f(static_cast<int>(args.size()), ptrs.data(), lens.data());
}

}  // namespace

absl::StatusOr<Value> BlockingCommand(const Endpoint& endpoint,
                                      const std::vector<std::string>& argv,
                                      absl::Duration connect_timeout,
                                      absl::Duration reply_timeout) {
  std::string where = absl::StrCat(endpoint.host, ":", endpoint.port);
  redisContext* c = redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port,
                                            absl::ToTimeval(connect_timeout));
  if (c == nullptr || c->err) {
    absl::Status s = absl::UnavailableError(
        absl::StrCat(where, ": cannot connect: ", c ? c->errstr : "out of memory"));
    if (c) redisFree(c);
    return s;
  }
  redisSetTimeout(c, absl::ToTimeval(reply_timeout));
  if (auto auth = AuthCommand(endpoint); !auth.empty()) {
    auto* r = static_cast<redisReply*>(WithArgv(auth, [&](int n, const char** p, const size_t* l) {
      return redisCommandArgv(c, n, p, l);
    }));
    absl::Status s;
    if (r == nullptr) {
      s = absl::UnavailableError(absl::StrCat(where, ": no reply to AUTH: ", c->errstr));
    } else if (r->type == REDIS_REPLY_ERROR) {
      s = absl::PermissionDeniedError(
          absl::StrCat(where, ": AUTH refused: ", absl::string_view(r->str, r->len)));
    }
    if (r) freeReplyObject(r);
    if (!s.ok()) {
      redisFree(c);
      return s;
    }
  }
  auto* reply = static_cast<redisReply*>(WithArgv(
      argv, [&](int n, const char** p, const size_t* l) { return redisCommandArgv(c, n, p, l); }));
  if (reply == nullptr) {
    absl::Status s = absl::UnavailableError(absl::StrCat(where, ": no reply: ", c->errstr));
    redisFree(c);
    return s;
  }
  Value value = Copy(reply);
  freeReplyObject(reply);
  redisFree(c);
  return value;
}

bool NotSent(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kNotSentUrl).has_value();
}

bool Overloaded(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kOverloadedUrl).has_value();
}

bool ReplicasShort(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kReplicasShortUrl).has_value();
}

absl::Status MarkReplicasShort(absl::Status status) {
  status.SetPayload(kReplicasShortUrl, absl::Cord("1"));
  return status;
}

int64_t Value::AsInt() const {
  if (type == Type::kInteger) return integer;
  int64_t v = 0;
  if (type == Type::kString && absl::SimpleAtoi(str, &v)) return v;
  return 0;
}

std::string Connection::ScriptSha(std::string_view script) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(script.data()), script.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

Connection::Connection(ConnectionOptions options) : options_(std::move(options)) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

Connection::~Connection() {
  Stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Connection::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Connection::Stop() {
  stop_.store(true);
  Wake();
  if (thread_.joinable()) thread_.join();
}

void Connection::Wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

void Connection::WaitFor(absl::Duration d) {
  pollfd p{wake_fd_, POLLIN, 0};
  poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(d)));
  uint64_t drained;
  [[maybe_unused]] ssize_t n = read(wake_fd_, &drained, sizeof(drained));
}

void Connection::Command(std::vector<std::string> argv, Callback done) {
  Queued item{std::move(argv), std::move(done)};
  Enqueue(absl::MakeSpan(&item, 1));  // no vector on the per-command path
}

void Connection::Pipeline(std::vector<std::vector<std::string>> commands, Callback done) {
  std::vector<Queued> items;
  items.reserve(commands.size());
  for (auto& argv : commands) items.push_back(Queued{std::move(argv), nullptr});
  if (items.empty()) {
    done(absl::InvalidArgumentError("Pipeline() needs at least one command"));
    return;
  }
  items.back().done = std::move(done);
  Enqueue(absl::MakeSpan(items));
}

void Connection::Durable(std::vector<std::string> argv, Callback done, bool asking) {
  const bool durable = options_.wait_replicas > 0;
  if (!asking) {
    Queued item{std::move(argv), std::move(done), durable};
    Enqueue(absl::MakeSpan(&item, 1));
    return;
  }
  Queued items[2] = {Queued{{"ASKING"}, nullptr, false},
                     Queued{std::move(argv), std::move(done), durable}};
  Enqueue(absl::MakeSpan(items, 2));
}

void Connection::Enqueue(absl::Span<Queued> items) {
  absl::Status refused;
  bool wake = false;
  {
    // Under mu_: the thread flips `connected_` off and fails the queue under the same lock, so a
    // command is either failed here or failed (or sent) by the thread, never stranded.
    absl::MutexLock lock(&mu_);
    if (!connected_.load(std::memory_order_relaxed)) {
      refused = MarkNotSent(absl::UnavailableError("Redis is not reachable; retry later"));
    } else if (queue_.size() + inflight_count_.load(std::memory_order_relaxed) >=
               options_.max_queued) {
      refused = MarkNotSent(absl::UnavailableError("too many Redis commands waiting; retry later"));
      refused.SetPayload(kOverloadedUrl, absl::Cord("1"));
    } else {
      wake = queue_.empty();  // the thread drains the whole queue once woken
      // Appended together under the lock, so a Pipeline's commands stay adjacent.
      for (Queued& q : items) queue_.push_back(std::move(q));
    }
  }
  if (!refused.ok()) {
    if (items.back().done) items.back().done(refused);
  } else if (wake) {
    Wake();
  }
}

void Connection::SetupDone() {
  {
    absl::MutexLock lock(&mu_);
    connected_.store(true, std::memory_order_release);
  }
  spdlog::info("redis {}: connected to {}:{}", options_.name, options_.endpoint.host,
               options_.endpoint.port);
  if (options_.on_connect) options_.on_connect();
}

void Connection::FailAll(const absl::Status& status) {
  std::vector<Queued> queued;
  {
    absl::MutexLock lock(&mu_);
    connected_.store(false, std::memory_order_release);
    queued.swap(queue_);
  }
  std::deque<Pending> inflight;
  inflight.swap(inflight_);
  inflight_count_.store(0, std::memory_order_relaxed);
  for (Pending& p : inflight) {
    if (p.done) p.done(status);
  }
  // These never reached the socket: saying so lets a caller resend them safely.
  absl::Status not_sent = MarkNotSent(status);
  for (Queued& q : queued) {
    if (q.done) q.done(not_sent);
  }
  // These ran; whether their replicas have them is unknown.
  std::vector<Held> held;
  held.swap(held_);
  absl::Status unknown = MarkReplicasShort(status);
  for (Held& h : held) h.done(unknown);
}

void Connection::Run() {
  std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.min_backoff;
  bool logged_down = false;
  while (!stop_.load()) {
    redisContext* c = Connect();
    if (c == nullptr) {
      // Full jitter, so many nodes do not reconnect in step.
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      WaitFor(backoff * jitter(rng));
      backoff = std::min(backoff * 2, options_.max_backoff);
      logged_down = true;
      continue;
    }
    std::string why = Serve(c);
    redisFree(c);
    bool was_connected = connected();
    FailAll(absl::UnavailableError(absl::StrCat("Redis connection lost: ", why)));
    if (was_connected) {
      // The backoff starts over only after a link that got through its setup, so a Redis that
      // accepts connections but fails them (loading its data) is retried with backoff too.
      logged_down = false;
      backoff = options_.min_backoff;
    }
    if (!stop_.load()) {
      GlobalMetrics().redis_errors.fetch_add(1, std::memory_order_relaxed);
      if (!logged_down) {
        spdlog::warn("redis {}: connection lost ({}); reconnecting", options_.name, why);
      }
      logged_down = true;
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      if (!was_connected) {
        WaitFor(backoff * jitter(rng));
        backoff = std::min(backoff * 2, options_.max_backoff);
      }
    }
    if (was_connected && options_.on_disconnect) options_.on_disconnect();
  }
  FailAll(absl::UnavailableError("server is shutting down"));
}

redisContext* Connection::Connect() {
  timeval tv = absl::ToTimeval(options_.connect_timeout);
  redisContext* c =
      redisConnectWithTimeout(options_.endpoint.host.c_str(), options_.endpoint.port, tv);
  if (c == nullptr || c->err) {
    static std::atomic<int64_t> last_log_ns{0};
    int64_t now = Metrics::NowNanos();
    // At most one line per 10 s per process while Redis stays down.
    if (now - last_log_ns.load() > 10'000'000'000) {
      last_log_ns.store(now);
      spdlog::warn("redis {}: cannot connect to {}:{}: {}", options_.name, options_.endpoint.host,
                   options_.endpoint.port, c ? c->errstr : "out of memory");
    }
    GlobalMetrics().redis_errors.fetch_add(1, std::memory_order_relaxed);
    if (c) redisFree(c);
    return nullptr;
  }
  redisEnableKeepAlive(c);
  int flags = fcntl(c->fd, F_GETFL, 0);
  fcntl(c->fd, F_SETFL, flags | O_NONBLOCK);
  // hiredis treats EAGAIN as "try again later" only on a non-blocking context.
  c->flags &= ~REDIS_BLOCK;
  return c;
}

std::string Connection::Serve(redisContext* c) {
  auto append = [&](const std::vector<std::string>& argv) {
    return WithArgv(argv, [&](int n, const char** p, const size_t* l) {
      return redisAppendCommandArgv(c, n, p, l);
    });
  };
  absl::Time now = absl::Now();
  // Setup: database, scripts, subscriptions; user commands are refused until it is done.
  std::vector<std::vector<std::string>> setup;
  if (auto auth = AuthCommand(options_.endpoint); !auth.empty()) setup.push_back(std::move(auth));
  if (options_.endpoint.db != 0) setup.push_back({"SELECT", std::to_string(options_.endpoint.db)});
  for (const auto& s : options_.scripts) setup.push_back({"SCRIPT", "LOAD", s});
  setup_pending_ = 0;
  for (const auto& cmd : setup) {
    append(cmd);
    Pending p;
    p.sent = now;
    p.setup = true;
    inflight_.push_back(std::move(p));
    ++setup_pending_;
  }
  if (setup_pending_ == 0) SetupDone();
  bool write_pending = setup_pending_ > 0;
  absl::Time next_tick = now + options_.tick_interval;
  int64_t batch_start_ns = 0;
  wait_inflight_ = false;
  while (!stop_.load()) {
    std::vector<Queued> batch;
    // Group commit: while a WAIT is out, what arrives waits for the next batch (and its one
    // WAIT), so a command never queues behind more than one WAIT besides its own.
    if (!wait_inflight_) {
      absl::MutexLock lock(&mu_);
      batch.swap(queue_);
    }
    now = absl::Now();
    bool durable = false;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (append(batch[i].argv) != REDIS_OK) {
        // Back to the queue, which FailAll fails (as not sent) with the rest: every callback
        // runs once.
        absl::MutexLock lock(&mu_);
        queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin() + i),
                      std::make_move_iterator(batch.end()));
        return "out of memory";
      }
      Pending p;
      p.done = std::move(batch[i].done);
      p.sent = now;
      p.durable = batch[i].durable;
      durable |= p.durable;
      if (options_.subscriber && !batch[i].argv.empty()) {
        if (std::string verb = SubscriptionVerb(batch[i].argv[0]); !verb.empty()) {
          p.subscription = std::make_unique<Subscription>();
          p.subscription->verb = std::move(verb);
          p.subscription->channels.assign(batch[i].argv.begin() + 1, batch[i].argv.end());
        }
      }
      inflight_.push_back(std::move(p));
      write_pending = true;
    }
    if (durable) {
      // One WAIT for the batch: Redis answers it once the replicas acknowledged every write
      // this connection made before it, so the durable replies above are held until then.
      append(
          {"WAIT", std::to_string(options_.wait_replicas),
           std::to_string(std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.wait_timeout)))});
      Pending p;
      p.sent = now;
      p.wait = true;
      inflight_.push_back(std::move(p));
      wait_inflight_ = true;
    }
    inflight_count_.store(inflight_.size(), std::memory_order_relaxed);
    if (write_pending) {
      int done = 0;
      if (redisBufferWrite(c, &done) != REDIS_OK) return c->errstr;
      write_pending = !done;
      if (batch_start_ns == 0 && !inflight_.empty()) batch_start_ns = Metrics::NowNanos();
    }
    pollfd fds[2] = {{c->fd, static_cast<short>(POLLIN | (write_pending ? POLLOUT : 0)), 0},
                     {wake_fd_, POLLIN, 0}};
    int wait_ms =
        static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(next_tick - now), 0, 100));
    if (poll(fds, 2, wait_ms) < 0 && errno != EINTR) return "poll failed";
    if (fds[1].revents & POLLIN) {
      uint64_t drained;
      [[maybe_unused]] ssize_t n = read(wake_fd_, &drained, sizeof(drained));
    }
    if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
      if (redisBufferRead(c) != REDIS_OK) return c->errstr;
      for (;;) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(c, &raw) != REDIS_OK) return c->errstr;
        if (raw == nullptr) break;
        auto* reply = static_cast<redisReply*>(raw);
        std::string error;
        bool ok = Dispatch(reply, &error);
        freeReplyObject(reply);
        if (!ok) return error;
      }
      if (inflight_.empty() && batch_start_ns != 0) {
        GlobalMetrics().redis_roundtrip.Observe(Metrics::NowNanos() - batch_start_ns);
        batch_start_ns = 0;
      }
    }
    now = absl::Now();
    if (!inflight_.empty() && now - inflight_.front().sent > options_.command_timeout) {
      return absl::StrCat("no answer within ", absl::FormatDuration(options_.command_timeout));
    }
    if (now >= next_tick) {
      next_tick = now + options_.tick_interval;
      if (options_.subscriber && connected()) {
        // A subscriber gets no replies unless something is published: ping it so a dead link
        // is noticed by the timeout above.
        append({"PING"});
        Pending p;
        p.sent = now;
        inflight_.push_back(std::move(p));
        write_pending = true;
      }
      if (connected() && options_.on_tick) options_.on_tick();
    }
  }
  return "stopped";
}

bool Connection::DispatchPubSub(redisReply* reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
      reply->element[0]->type != REDIS_REPLY_STRING) {
    return false;
  }
  std::string_view kind = Str(reply->element[0]);
  if (kind == "message" || kind == "smessage") {
    if (options_.on_message && reply->element[1]->type == REDIS_REPLY_STRING &&
        reply->element[2]->type == REDIS_REPLY_STRING) {
      options_.on_message(Str(reply->element[1]), Str(reply->element[2]));
    }
    return true;
  }
  if (kind != "subscribe" && kind != "ssubscribe" && kind != "unsubscribe" &&
      kind != "sunsubscribe") {
    return false;  // ["pong", ""]: a ping's reply
  }
  std::string_view channel =
      reply->element[1]->type == REDIS_REPLY_STRING ? Str(reply->element[1]) : std::string_view();
  // A confirmation of the command at the head, or (an unsubscribe only) Redis's own notice.
  if (!inflight_.empty() && inflight_.front().subscription &&
      inflight_.front().subscription->verb == kind) {
    auto& left = inflight_.front().subscription->channels;
    if (auto it = std::find(left.begin(), left.end(), channel); it != left.end()) {
      left.erase(it);
      if (left.empty()) {
        Pending p = std::move(inflight_.front());
        inflight_.pop_front();
        if (p.done) {
          Value ok;
          ok.type = Value::Type::kStatus;
          ok.str = "OK";
          p.done(std::move(ok));
        }
      }
    }
  }
  if (options_.on_subscription) options_.on_subscription(kind, channel);
  return true;
}

void Connection::ReleaseHeld(const redisReply* wait_reply) {
  std::vector<Held> held;
  held.swap(held_);
  int64_t acked = wait_reply->type == REDIS_REPLY_INTEGER ? wait_reply->integer : -1;
  if (acked >= options_.wait_replicas) {
    for (Held& h : held) h.done(std::move(h.value));
    return;
  }
  std::string why =
      acked >= 0
          ? absl::StrCat("only ", acked, " of the ", options_.wait_replicas,
                         " replicas asked for (--redis_wait_replicas) acknowledged it within ",
                         absl::FormatDuration(options_.wait_timeout))
          : absl::StrCat("WAIT failed: ",
                         wait_reply->str != nullptr ? ToAbsl(Str(wait_reply)) : "no answer");
  absl::Status shortfall = MarkReplicasShort(absl::UnavailableError(
      absl::StrCat("Redis stored it, but ", why, "; it may still be delivered later")));
  for (Held& h : held) h.done(shortfall);
}

bool Connection::Dispatch(redisReply* reply, std::string* error) {
  if (options_.subscriber && DispatchPubSub(reply)) return true;
  if (inflight_.empty()) {
    *error = "a reply nobody asked for";
    return false;
  }
  Pending p = std::move(inflight_.front());
  inflight_.pop_front();
  if (p.wait) {
    wait_inflight_ = false;
    ReleaseHeld(reply);
    return true;
  }
  if (p.setup) {
    if (reply->type == REDIS_REPLY_ERROR) {
      *error = absl::StrCat("setup failed: ", absl::string_view(reply->str, reply->len));
      return false;
    }
    if (--setup_pending_ == 0) SetupDone();
    return true;
  }
  if (reply->type == REDIS_REPLY_ERROR &&
      absl::StartsWith(absl::string_view(reply->str, reply->len), "NOSCRIPT")) {
    // The script cache was flushed under us: reconnecting loads the scripts again.
    // Redis refused the script without running it, so it may be resent.
    if (p.done) p.done(MarkNotSent(absl::UnavailableError("Redis lost its scripts; retry")));
    *error = "scripts flushed";
    return false;
  }
  if (!p.done) return true;
  if (p.durable && reply->type != REDIS_REPLY_ERROR) {
    held_.push_back(Held{std::move(p.done), Copy(reply)});
    return true;
  }
  if (reply->type == REDIS_REPLY_ERROR && !options_.error_replies_as_values) {
    p.done(absl::InternalError(
        absl::StrCat("Redis error: ", absl::string_view(reply->str, reply->len))));
  } else {
    p.done(Copy(reply));
  }
  return true;
}

}  // namespace push::redis
