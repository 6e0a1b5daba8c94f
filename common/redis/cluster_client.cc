#include "common/redis/cluster_client.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace push::redis {
namespace {

std::string Key(const Endpoint& e) { return absl::StrCat(e.host, ":", e.port); }

// CLUSTER SLOTS from one node over a short-lived blocking connection. Only the manager thread
// (and Start()) call it, so the blocking is never a caller's.
absl::StatusOr<SlotMap> FetchSlotMap(const Endpoint& node, absl::Duration connect_timeout,
                                     absl::Duration reply_timeout) {
  absl::StatusOr<Value> value =
      BlockingCommand(node, {"CLUSTER", "SLOTS"}, connect_timeout, reply_timeout);
  if (!value.ok()) return value.status();
  absl::StatusOr<SlotMap> map = ParseClusterSlots(*value, node.host);
  if (!map.ok()) {
    return absl::Status(map.status().code(), absl::StrCat(Key(node), ": ", map.status().message()));
  }
  return map;
}

// A seed that is a plain Redis: no later attempt will do better, so Start() says so.
bool NotInClusterMode(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition &&
         absl::StrContains(s.message(), "cluster support disabled");
}

// Error replies that mean the node did not run the command and a later attempt may succeed.
// They are all given before execution (a script's own errors never carry these prefixes: keys
// are checked before a script runs), so retrying cannot run a command twice.
bool Retryable(std::string_view error, bool* stale_map) {
  auto starts = [&](std::string_view prefix) {
    return error.size() >= prefix.size() && error.substr(0, prefix.size()) == prefix;
  };
  // CLUSTERDOWN: a failover somewhere (every node says it for a moment while one shard has no
  // primary); READONLY: we wrote to a node that has become a replica. Both mean the map may be
  // about to change.
  *stale_map = starts("CLUSTERDOWN") || starts("READONLY");
  return *stale_map || starts("TRYAGAIN") || starts("LOADING") || starts("MASTERDOWN");
}

}  // namespace

struct ClusterClient::Op {
  uint16_t slot = 0;
  std::vector<std::string> argv;
  Callback done;
  absl::Time deadline;
  int attempts = 0;  // retries after backoff so far
  int redirects = 0;
  bool durable = false;  // Connection::Durable on whichever primary runs it
  std::string last_error;
  // Where an ASK sent the command: used for the next attempt only.
  std::optional<Endpoint> ask;
  // Where a MOVED sent it: used until a map newer than moved_generation is installed.
  std::optional<Endpoint> moved;
  int64_t moved_generation = 0;
};

ClusterClient::ClusterClient(ClusterOptions options) : options_(std::move(options)) {}

ClusterClient::~ClusterClient() { Stop(); }

std::shared_ptr<const ClusterClient::Routing> ClusterClient::routing() const {
  absl::ReaderMutexLock lock(&mu_);
  return routing_;
}

SlotMap ClusterClient::slot_map() const {
  std::shared_ptr<const Routing> r = routing();
  return r ? r->map : SlotMap();
}

int ClusterClient::ShardOf(uint16_t slot) const {
  std::shared_ptr<const Routing> r = routing();
  return r ? r->map.ShardIndex(slot) : -1;
}

int64_t ClusterClient::map_generation() const {
  std::shared_ptr<const Routing> r = routing();
  return r ? r->generation : 0;
}

absl::Status ClusterClient::Start() {
  if (options_.seeds.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Redis Cluster ", options_.name, ": no seed node given"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_) {
      return absl::FailedPreconditionError(
          absl::StrCat("Redis Cluster ", options_.name, ": Start() after Start() or Stop()"));
    }
    started_ = true;
  }
  absl::StatusOr<SlotMap> map = ReadMap(options_.seeds);
  if (!map.ok() && NotInClusterMode(map.status())) {
    absl::MutexLock lock(&mu_);
    started_ = false;
    return map.status();
  }
  if (map.ok()) {
    Install(*std::move(map));
  } else {
    spdlog::warn("redis cluster {}: {}; still trying", options_.name,
                 std::string(map.status().message()));
    absl::MutexLock lock(&mu_);
    refresh_requested_ = true;
  }
  timer_thread_ = std::thread([this] { TimerLoop(); });
  manager_thread_ = std::thread([this] { ManagerLoop(); });
  if (!map.ok()) return map.status();
  // The connections were just started: waiting for them here (briefly) spares the first
  // commands a round of refusals, retries and map refreshes.
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](std::atomic<bool>* up) { return up->load(); }, &up_),
                       options_.connect_timeout);
  return absl::OkStatus();
}

void ClusterClient::Stop() {
  std::shared_ptr<const Routing> r;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    r = routing_;
    timer_cv_.SignalAll();
    manager_cv_.SignalAll();
  }
  // The manager first: it is the only one that installs maps and stops retired connections.
  if (manager_thread_.joinable()) manager_thread_.join();
  if (timer_thread_.joinable()) timer_thread_.join();
  // Stopping a connection fails what it has queued or in flight; those callbacks see stopping_
  // and fail their commands instead of retrying them.
  if (r) {
    for (const auto& conn : r->shard_conns) conn->Stop();
  }
  std::multimap<absl::Time, std::unique_ptr<Op>> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(retries_);
  }
  for (auto& [when, op] : left) {
    absl::Status stopped = absl::UnavailableError(
        absl::StrCat("Redis Cluster ", options_.name, " is stopping; slot ", op->slot,
                     " not served (last error: ", op->last_error, ")"));
    Fail(std::move(op), std::move(stopped));
  }
}

void ClusterClient::Command(uint16_t slot, std::vector<std::string> argv, Callback done) {
  Submit(slot, std::move(argv), std::move(done), false);
}

void ClusterClient::Durable(uint16_t slot, std::vector<std::string> argv, Callback done) {
  Submit(slot, std::move(argv), std::move(done), true);
}

void ClusterClient::Submit(uint16_t slot, std::vector<std::string> argv, Callback done,
                           bool durable) {
  if (slot >= kClusterSlots) {
    done(absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is out of range")));
    return;
  }
  auto op = std::make_unique<Op>();
  op->slot = slot;
  op->argv = std::move(argv);
  op->done = std::move(done);
  op->durable = durable;
  op->deadline = absl::Now() + options_.command_timeout;
  Dispatch(std::move(op));
}

void ClusterClient::CommandAll(std::vector<std::string> argv,
                               absl::AnyInvocable<void(std::vector<absl::StatusOr<Value>>)> done) {
  std::shared_ptr<const Routing> r = routing();
  if (!r || r->map.shards().empty()) {
    done({});
    return;
  }
  struct Gather {
    std::vector<absl::StatusOr<Value>> results;
    std::atomic<size_t> left;
    absl::AnyInvocable<void(std::vector<absl::StatusOr<Value>>)> done;
  };
  size_t n = r->first_slot.size();
  auto gather = std::make_shared<Gather>();
  gather->results.resize(n);
  gather->left.store(n);
  gather->done = std::move(done);
  for (size_t i = 0; i < n; ++i) {
    // Through a slot the shard serves, so the command follows the shard through a failover.
    // Keyless commands are never redirected, so it stays on that shard's primary.
    Command(r->first_slot[i], argv, [gather, i](absl::StatusOr<Value> result) {
      gather->results[i] = std::move(result);
      // acq_rel: the last one sees every other shard's result.
      if (gather->left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        gather->done(std::move(gather->results));
      }
    });
  }
}

void ClusterClient::Dispatch(std::unique_ptr<Op> op) {
  std::shared_ptr<const Routing> r;
  bool stopped;
  {
    absl::ReaderMutexLock lock(&mu_);
    stopped = stopping_ || !started_;
    r = routing_;
  }
  if (stopped) {
    // Built before the call: the op is moved into Fail()'s parameter in an unspecified order
    // with the other argument (the same everywhere below).
    absl::Status status = absl::UnavailableError(
        absl::StrCat("Redis Cluster ", options_.name, " is not running (slot ", op->slot, ")"));
    Fail(std::move(op), std::move(status));
    return;
  }
  if (absl::Now() > op->deadline) {
    Retry(std::move(op), "", false);  // fails it, with its last error
    return;
  }
  Endpoint to;
  std::shared_ptr<Connection> conn;
  bool asking = false;
  if (op->ask) {
    to = *std::move(op->ask);
    op->ask.reset();
    asking = true;
  } else if (op->moved && r && r->generation <= op->moved_generation) {
    to = *op->moved;
  } else {
    op->moved.reset();
    int shard = r ? r->map.ShardIndex(op->slot) : -1;
    if (shard < 0) {
      Retry(std::move(op), r ? "no node serves the slot" : "no slot map yet", true);
      return;
    }
    to = r->map.shards()[shard].primary;
    conn = r->shard_conns[shard];
  }
  if (!conn && r) {
    if (auto it = r->by_key.find(Key(to)); it != r->by_key.end()) conn = it->second;
  }
  if (!conn) {
    // A redirect names a node the map we have does not know as a primary yet (the refresh
    // the MOVED asked for is under way): wait for it.
    Retry(std::move(op), absl::StrCat(Key(to), " is not a primary of the slot map yet"), true);
    return;
  }
  if (!conn->connected()) {
    // No refresh asked for here: the disconnect asked for one, and while a shard is down the
    // manager reads the map every down_refresh_interval anyway (a flood of retries must not
    // become a flood of CLUSTER SLOTS).
    Retry(std::move(op), absl::StrCat("the connection to ", Key(to), " is down"), false);
    return;
  }
  Send(std::move(op), std::move(conn), std::move(to), asking);
}

void ClusterClient::Send(std::unique_ptr<Op> op, std::shared_ptr<Connection> conn, Endpoint to,
                         bool asking) {
  // A copy: the op keeps its argv in case it must be sent again.
  std::vector<std::string> argv = op->argv;
  const bool durable = op->durable;
  Callback on_reply = [this, op = std::move(op),
                       to = std::move(to)](absl::StatusOr<Value> result) mutable {
    OnReply(std::move(op), to, std::move(result));
  };
  if (durable) {
    conn->Durable(std::move(argv), std::move(on_reply), asking);
  } else if (asking) {
    std::vector<std::vector<std::string>> commands;
    commands.push_back({"ASKING"});
    commands.push_back(std::move(argv));
    conn->Pipeline(std::move(commands), std::move(on_reply));
  } else {
    conn->Command(std::move(argv), std::move(on_reply));
  }
}

void ClusterClient::OnReply(std::unique_ptr<Op> op, const Endpoint& sent_to,
                            absl::StatusOr<Value> result) {
  if (!result.ok()) {
    if (Overloaded(result.status())) {
      // The shard's queue is full: fail at once, as with a single Redis, rather than hold the
      // command (and add to the pile) until its timeout.
      absl::Status busy =
          absl::UnavailableError(absl::StrCat("Redis Cluster ", options_.name, ": slot ", op->slot,
                                              ": ", Key(sent_to), ": ", result.status().message()));
      Fail(std::move(op), std::move(busy));
      return;
    }
    if (ReplicasShort(result.status())) {
      // It ran on the primary; the replicas did not confirm it. Not resent, as below.
      absl::Status shortfall = MarkReplicasShort(
          absl::Status(result.status().code(),
                       absl::StrCat("Redis Cluster ", options_.name, ": slot ", op->slot, ": ",
                                    Key(sent_to), ": ", result.status().message())));
      RequestRefresh();  // a replica or the primary may be failing
      Fail(std::move(op), std::move(shortfall));
      return;
    }
    if (NotSent(result.status())) {
      // Refused or still queued when the link went down: Redis never saw it. (The disconnect
      // itself asked for a refresh.)
      Retry(std::move(op), absl::StrCat(Key(sent_to), ": ", result.status().message()), false);
      return;
    }
    // Written, and then the link failed before the answer came. Redis may have run it, so it is
    // not resent: a push without a message id would be appended twice. The caller knows
    // whether its command is idempotent and may retry it (and will find the new primary).
    RequestRefresh();
    absl::Status lost = absl::UnavailableError(absl::StrCat(
        "Redis Cluster ", options_.name, ": slot ", op->slot, ": the connection to ", Key(sent_to),
        " failed while the command was in flight, so it may or may not have run ",
        "(not resent): ", result.status().message()));
    Fail(std::move(op), std::move(lost));
    return;
  }
  if (result->type != Value::Type::kError) {
    op->done(*std::move(result));
    return;
  }
  const std::string& error = result->str;
  if (std::optional<Redirect> redirect = ParseRedirect(error)) {
    if (++op->redirects > options_.max_redirects) {
      absl::Status looping = absl::UnavailableError(
          absl::StrCat("Redis Cluster ", options_.name, ": slot ", op->slot, ": more than ",
                       options_.max_redirects, " redirects; last: ", Key(sent_to), ": ", error));
      Fail(std::move(op), std::move(looping));
      return;
    }
    Endpoint target = std::move(redirect->endpoint);
    if (target.host.empty()) target.host = sent_to.host;
    op->last_error = absl::StrCat(Key(sent_to), ": ", error);
    // The server knows the key's slot better than a caller who computed it.
    op->slot = redirect->slot;
    if (redirect->kind == Redirect::Kind::kAsk) {
      op->ask = std::move(target);
    } else {
      op->moved = std::move(target);
      op->moved_generation = map_generation();
      RequestRefresh();
    }
    Dispatch(std::move(op));
    return;
  }
  bool stale_map = false;
  if (Retryable(error, &stale_map)) {
    Retry(std::move(op), absl::StrCat(Key(sent_to), ": ", error), stale_map);
    return;
  }
  op->done(absl::InternalError(absl::StrCat("Redis error: ", error)));
}

void ClusterClient::Retry(std::unique_ptr<Op> op, std::string why, bool refresh) {
  if (!why.empty()) op->last_error = std::move(why);
  absl::Time now = absl::Now();
  bool stopping;
  if (now <= op->deadline) {
    absl::Duration backoff =
        options_.retry_min_backoff * (int64_t{1} << std::min(op->attempts, 20));
    backoff = std::min(backoff, options_.retry_max_backoff);
    ++op->attempts;
    // One last attempt at the deadline rather than giving up a backoff early.
    absl::Time when = std::min(now + backoff, op->deadline);
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
    if (!stopping) {
      if (refresh && !refresh_requested_) {
        refresh_requested_ = true;
        manager_cv_.Signal();
      }
      bool earliest = retries_.empty() || when < retries_.begin()->first;
      retries_.emplace(when, std::move(op));
      if (earliest) timer_cv_.Signal();
      return;
    }
  } else {
    absl::ReaderMutexLock lock(&mu_);
    stopping = stopping_;
  }
  absl::Status status =
      stopping
          ? absl::UnavailableError(absl::StrCat("Redis Cluster ", options_.name,
                                                " is stopping; slot ", op->slot,
                                                " not served (last error: ", op->last_error, ")"))
          : absl::UnavailableError(absl::StrCat(
                "Redis Cluster ", options_.name, ": slot ", op->slot, " not served within ",
                absl::FormatDuration(options_.command_timeout), "; last error: ", op->last_error));
  Fail(std::move(op), std::move(status));
}

void ClusterClient::Fail(std::unique_ptr<Op> op, absl::Status status) {
  op->done(std::move(status));
}

void ClusterClient::RequestRefresh() {
  absl::MutexLock lock(&mu_);
  if (refresh_requested_) return;  // coalesced with the one already asked for
  refresh_requested_ = true;
  manager_cv_.Signal();
}

void ClusterClient::MarkUpDirty() {
  absl::MutexLock lock(&mu_);
  up_dirty_ = true;
  manager_cv_.Signal();
}

std::shared_ptr<Connection> ClusterClient::NewConnection(const Endpoint& endpoint) {
  ConnectionOptions o;
  o.endpoint = endpoint;
  o.endpoint.db = 0;  // a cluster has only database 0
  o.endpoint.user = options_.user;
  o.endpoint.password = options_.password;
  o.name = absl::StrCat(options_.name, " ", Key(endpoint));
  o.command_timeout = options_.command_timeout;
  o.connect_timeout = options_.connect_timeout;
  o.scripts = options_.scripts;
  o.error_replies_as_values = true;  // MOVED, ASK and the retryable ones are ours to handle
  o.wait_replicas = options_.wait_replicas;
  o.wait_timeout = options_.wait_timeout;
  o.on_connect = [this] { MarkUpDirty(); };
  o.on_disconnect = [this] {
    MarkUpDirty();
    // Maybe a failover: the manager keeps reading the map until this shard is up again.
    RequestRefresh();
  };
  return std::make_shared<Connection>(std::move(o));
}

absl::StatusOr<SlotMap> ClusterClient::ReadMap(const std::vector<Endpoint>& candidates) {
  std::vector<std::string> errors;
  absl::Duration reply_timeout = std::min(options_.command_timeout, absl::Seconds(2));
  for (Endpoint node : candidates) {
    {
      absl::ReaderMutexLock lock(&mu_);
      if (stopping_) return absl::UnavailableError("stopping");
    }
    node.user = options_.user;
    node.password = options_.password;
    absl::StatusOr<SlotMap> map = FetchSlotMap(node, options_.connect_timeout, reply_timeout);
    if (map.ok() || NotInClusterMode(map.status())) return map;
    errors.push_back(std::string(map.status().message()));
  }
  return absl::UnavailableError(absl::StrCat("Redis Cluster ", options_.name,
                                             ": no node answered CLUSTER SLOTS (",
                                             absl::StrJoin(errors, "; "), ")"));
}

std::vector<Endpoint> ClusterClient::RefreshCandidates() const {
  std::vector<Endpoint> out;
  absl::flat_hash_set<std::string> seen;
  auto add = [&](const Endpoint& e) {
    if (seen.insert(Key(e)).second) out.push_back(e);
  };
  if (std::shared_ptr<const Routing> r = routing()) {
    // Live primaries answer at once; a dead one may cost a connect timeout.
    for (size_t i = 0; i < r->shard_conns.size(); ++i) {
      if (r->shard_conns[i]->connected()) add(r->map.shards()[i].primary);
    }
    // Replicas next: after a failover one of them is the primary we are looking for.
    for (const Shard& shard : r->map.shards()) {
      for (const Endpoint& replica : shard.replicas) add(replica);
    }
    for (const Shard& shard : r->map.shards()) add(shard.primary);
  }
  for (const Endpoint& seed : options_.seeds) add(seed);
  return out;
}

bool ClusterClient::Install(SlotMap map) {
  auto next = std::make_shared<Routing>();
  next->map = std::move(map);
  const std::vector<Shard>& shards = next->map.shards();
  std::vector<std::shared_ptr<Connection>> fresh, retired;
  std::shared_ptr<const Routing> prev;
  int moved_slots = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    prev = routing_;
    for (const Shard& shard : shards) {
      std::string key = Key(shard.primary);
      std::shared_ptr<Connection> conn;
      if (auto it = next->by_key.find(key); it != next->by_key.end()) {
        conn = it->second;  // two node ids on one address (a node restarted with a new id)
      } else if (prev && prev->by_key.contains(key)) {
        conn = prev->by_key.at(key);
      } else {
        conn = NewConnection(shard.primary);
        fresh.push_back(conn);
      }
      next->by_key[key] = conn;
      next->shard_keys.push_back(std::move(key));
      next->shard_conns.push_back(std::move(conn));
    }
    next->first_slot.assign(shards.size(), 0);
    std::vector<bool> seen(shards.size(), false);
    for (int slot = 0; slot < kClusterSlots; ++slot) {
      int shard = next->map.ShardIndex(static_cast<uint16_t>(slot));
      if (shard >= 0 && !seen[shard]) {
        seen[shard] = true;
        next->first_slot[shard] = static_cast<uint16_t>(slot);
      }
      if (prev) {
        int old = prev->map.ShardIndex(static_cast<uint16_t>(slot));
        const std::string* was = old >= 0 ? &prev->shard_keys[old] : nullptr;
        const std::string* is = shard >= 0 ? &next->shard_keys[shard] : nullptr;
        if ((was == nullptr) != (is == nullptr) || (was && *was != *is)) ++moved_slots;
      }
    }
    if (prev) {
      for (const auto& [key, conn] : prev->by_key) {
        if (!next->by_key.contains(key)) retired.push_back(conn);
      }
    }
    next->generation = prev ? prev->generation + 1 : 1;
    routing_ = next;
    if (moved_slots > 0 && !retries_.empty()) {
      // Commands waiting out a backoff may have been waiting for exactly this: try them now.
      absl::Time now = absl::Now();
      std::multimap<absl::Time, std::unique_ptr<Op>> waiting;
      waiting.swap(retries_);
      for (auto& [when, op] : waiting) retries_.emplace(std::min(when, now), std::move(op));
      timer_cv_.Signal();
    }
  }
  for (const auto& conn : fresh) conn->Start();
  // Their queued commands fail as not sent and are retried on the new map; their in-flight
  // ones fail UNAVAILABLE (they may have run).
  for (const auto& conn : retired) conn->Stop();
  std::vector<std::string> primaries;
  for (const Shard& shard : shards) primaries.push_back(Key(shard.primary));
  if (!prev) {
    spdlog::info("redis cluster {}: {} primaries ({}), {} of {} slots served", options_.name,
                 shards.size(), absl::StrJoin(primaries, ", "), next->map.assigned_slots(),
                 kClusterSlots);
  } else if (moved_slots > 0) {
    spdlog::info("redis cluster {}: slot map changed, {} slots moved; primaries now {}",
                 options_.name, moved_slots, absl::StrJoin(primaries, ", "));
  }
  return !prev || moved_slots > 0;
}

void ClusterClient::TimerLoop() {
  for (;;) {
    std::vector<std::unique_ptr<Op>> due;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (stopping_) return;  // Stop() fails what is left
        absl::Time now = absl::Now();
        while (!retries_.empty() && retries_.begin()->first <= now) {
          due.push_back(std::move(retries_.begin()->second));
          retries_.erase(retries_.begin());
        }
        if (!due.empty()) break;
        timer_cv_.WaitWithDeadline(
            &mu_, retries_.empty() ? absl::InfiniteFuture() : retries_.begin()->first);
      }
    }
    for (auto& op : due) Dispatch(std::move(op));
  }
}

void ClusterClient::ManagerLoop() {
  absl::Time last_refresh = absl::Now();
  for (;;) {
    bool refresh = false;
    bool check_up = false;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (stopping_) return;
        absl::Time now = absl::Now();
        absl::Duration interval =
            up_.load() ? options_.refresh_interval : options_.down_refresh_interval;
        absl::Time periodic = last_refresh + interval;
        absl::Time earliest = last_refresh + options_.min_refresh_gap;
        if (up_dirty_) {
          up_dirty_ = false;
          check_up = true;
        }
        if ((refresh_requested_ || now >= periodic) && now >= earliest) {
          refresh_requested_ = false;
          refresh = true;
        }
        if (refresh || check_up) break;
        manager_cv_.WaitWithDeadline(&mu_, refresh_requested_ ? earliest : periodic);
      }
    }
    if (refresh) {
      // Requests made while this one runs set refresh_requested_ again: one more read follows
      // (the node may have answered before the change that prompted them).
      absl::StatusOr<SlotMap> map = ReadMap(RefreshCandidates());
      last_refresh = absl::Now();
      if (map.ok()) {
        if (Install(*std::move(map)) && options_.on_map_changed) options_.on_map_changed();
      } else if (uint64_t failures = refresh_failures_.Hit(); failures > 0) {
        spdlog::warn("redis cluster {}: cannot refresh the slot map ({} failed reads): {}",
                     options_.name, failures, std::string(map.status().message()));
      }
      check_up = true;
    }
    if (check_up) UpdateUp();
  }
}

void ClusterClient::UpdateUp() {
  std::shared_ptr<const Routing> r = routing();
  bool up = r != nullptr && r->map.assigned_slots() == kClusterSlots;
  if (up) {
    for (const auto& conn : r->shard_conns) up = up && conn->connected();
  }
  {
    // Under mu_ so Start()'s Await sees the change.
    absl::MutexLock lock(&mu_);
    if (up_.load() == up) return;
    up_.store(up, std::memory_order_release);
  }
  if (up) {
    spdlog::info("redis cluster {}: every slot's primary is reachable", options_.name);
  } else {
    spdlog::warn("redis cluster {}: some slot has no reachable primary", options_.name);
  }
  if (options_.on_up_changed) options_.on_up_changed(up);
}

}  // namespace push::redis
