#include "common/redis/redis_presence.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/metrics.h"
#include "common/redis/redis_schema.h"
#include "spdlog/spdlog.h"

namespace push {
namespace {

using presence::Event;
using presence::Kind;

// Every presence script starts with this. KEYS: log, n, users, leaving, lastnode, insts (all of
// {presence}; an instance's connections, pushd:{presence}:inst:<i>, share the slot). ARGV: this
// instance ('' = none: reports nothing), node, offline delay ms, log cap, lease ms, then the
// script's own.
//
// The rules are PresenceState's (common/delivery/presence.cc), on these keys:
//  - users[u] exists while the user is online (its live connections; 0 = leaving: its last
//    connection closed, OFFLINE falls due at leaving[u], and lastnode[u] says where it was);
//  - inst:<i>[c] = "user\ndevice\nnode" while connection c of instance i is open.
// Times are Redis's (TIME), so every node agrees on them.
constexpr char kCommon[] = R"lua(
local LOG, N, USERS, LEAVING, LAST, INSTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ME, NODE, DELAY, CAP, LEASE = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local CONNECTED, DISCONNECTED, ONLINE, OFFLINE = 1, 2, 3, 4
local first, count, cursor = 0, 0, nil
local function id_cursor(id) return tonumber(string.match(id, '^(%d+)')) end
-- Appends one event with the next cursor (ids <cursor>-0: XRANGE by cursor).
local function emit(kind, u, c, d, node, reason)
  if not cursor then
    cursor = tonumber(redis.call('GET', N) or '0')
    if cursor == 0 and redis.call('EXISTS', LOG) == 1 then
      -- The counter was lost but not the log: go on after the log's newest.
      local info = redis.call('XINFO', 'STREAM', LOG)
      for k = 1, #info, 2 do
        if info[k] == 'last-generated-id' then cursor = id_cursor(info[k + 1]) end
      end
    end
  end
  cursor = cursor + 1
  local a = {'XADD', LOG, 'MAXLEN', '~', CAP, cursor .. '-0', 'k', kind, 'u', u, 't', now}
  if c ~= '' then a[#a + 1] = 'c'; a[#a + 1] = c end
  if d ~= '' then a[#a + 1] = 'd'; a[#a + 1] = d end
  if node ~= '' then a[#a + 1] = 'n'; a[#a + 1] = node end
  if reason ~= '' then a[#a + 1] = 'r'; a[#a + 1] = reason end
  redis.call(unpack(a))
  redis.call('SET', N, cursor)
  if first == 0 then first = cursor end
  count = count + 1
end
local function inst_key(i) return INST_PREFIX .. i end
-- Renews this instance's lease: 1 when it was missing or had run out (this instance was taken
-- for dead, or Redis lost it), 0 when it ran.
local function renew()
  if ME == '' then return 0 end
  local old = redis.call('HGET', INSTS, ME)
  redis.call('HSET', INSTS, ME, now + LEASE)
  if old and tonumber(old) > now then return 0 end
  return 1
end
local function connected(i, c, u, d)
  local ik = inst_key(i)
  if redis.call('HSETNX', ik, c, u .. '\n' .. d .. '\n' .. NODE) == 0 then return end
  emit(CONNECTED, u, c, d, NODE, '')
  local known = redis.call('HEXISTS', USERS, u) == 1
  redis.call('HINCRBY', USERS, u, 1)
  if known then
    redis.call('ZREM', LEAVING, u)  -- leaving: still online, its OFFLINE is off
    redis.call('HDEL', LAST, u)
  else
    emit(ONLINE, u, '', '', NODE, '')
  end
end
local function disconnected(ik, c, reason)
  local rec = redis.call('HGET', ik, c)
  if not rec then return end
  redis.call('HDEL', ik, c)
  local u, d, node = string.match(rec, '^([^\n]*)\n([^\n]*)\n(.*)$')
  if not u then return end
  emit(DISCONNECTED, u, c, d, node, reason)
  local n = tonumber(redis.call('HGET', USERS, u) or '0')
  if n > 0 then
    n = redis.call('HINCRBY', USERS, u, -1)
    if n == 0 then
      redis.call('ZADD', LEAVING, now + DELAY, u)
      redis.call('HSET', LAST, u, node)
    end
  end
end
)lua";

// The reports of this instance, in order. ARGV[6...]: groups of 5: op ('C' or 'D'),
// user, connection, device, reason. Returns {first cursor, events, lease was missing}.
constexpr char kBatchScript[] = R"lua(
local missing = renew()
for k = 6, #ARGV - 4, 5 do
  if ARGV[k] == 'C' then
    connected(ME, ARGV[k + 2], ARGV[k + 1], ARGV[k + 3])
  else
    disconnected(inst_key(ME), ARGV[k + 2], ARGV[k + 4])
  end
end
return {first, count, missing}
)lua";

// Every tick of every node with presence. ARGV[6...]: max OFFLINEs, retention ms, max
// connections of dead instances, an instance to take for dead now ('' = none).
//  1. renews this instance's lease;
//  2. ends instances whose lease ran out: DISCONNECTED "node lost" for their connections (at
//     most the max, sorted by id); an instance's lease entry goes with its last connection;
//  3. OFFLINE for users whose delay ran out (at most the max, in due order);
//  4. trims the log of events older than the retention (binary search on the cursors for the
//     first event young enough; cursors are in time order).
// Returns {first cursor, events, lease was missing, more to do}.
constexpr char kSweepScript[] = R"lua(
local MAX_OFFLINE, RETENTION, MAX_LOST, FORCE =
  tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local missing = renew()
local more = 0
if FORCE ~= '' then redis.call('HSET', INSTS, FORCE, 0) end
local budget = MAX_LOST
local insts = redis.call('HGETALL', INSTS)
for k = 1, #insts, 2 do
  local inst = insts[k]
  if tonumber(insts[k + 1]) <= now and inst ~= ME then
    local ik = inst_key(inst)
    if budget > 0 then
      local cur, fields, seen = '0', {}, {}
      repeat
        local r = redis.call('HSCAN', ik, cur, 'COUNT', budget)
        cur = r[1]
        for j = 1, #r[2], 2 do
          local c = r[2][j]
          if #fields < budget and not seen[c] then seen[c] = true; fields[#fields + 1] = c end
        end
      until cur == '0' or #fields >= budget
      table.sort(fields)
      for _, c in ipairs(fields) do disconnected(ik, c, 'node lost') end
      budget = budget - #fields
    end
    if redis.call('HLEN', ik) == 0 then redis.call('HDEL', INSTS, inst) else more = 1 end
  end
end
local due = redis.call('ZRANGEBYSCORE', LEAVING, '-inf', now, 'LIMIT', 0, MAX_OFFLINE)
for _, u in ipairs(due) do
  redis.call('ZREM', LEAVING, u)
  if redis.call('HGET', USERS, u) == '0' then
    emit(OFFLINE, u, '', '', redis.call('HGET', LAST, u) or '', '')
    redis.call('HDEL', USERS, u)
  end
  redis.call('HDEL', LAST, u)
end
if #due >= MAX_OFFLINE then more = 1 end
local function at(e)
  for j = 1, #e[2], 2 do if e[2][j] == 't' then return tonumber(e[2][j + 1]) end end
  return 0
end
local cutoff = now - RETENTION
local head = redis.call('XRANGE', LOG, '-', '+', 'COUNT', 1)
if #head > 0 and at(head[1]) < cutoff then
  -- lo: an old event's cursor; hi: the first event at or after it is young (or there is none).
  local lo, hi = id_cursor(head[1][1]), tonumber(redis.call('GET', N) or '0') + 1
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    local e = redis.call('XRANGE', LOG, mid .. '-0', '+', 'COUNT', 1)
    if #e > 0 and at(e[1]) < cutoff then lo = id_cursor(e[1][1]) else hi = mid end
  end
  redis.call('XTRIM', LOG, 'MINID', hi .. '-0')
end
return {first, count, missing, more}
)lua";

// Graceful goodbye: the lease goes when this instance has no connection left in presence.
constexpr char kByeScript[] = R"lua(
if ME ~= '' and redis.call('HLEN', inst_key(ME)) == 0 then
  redis.call('HDEL', INSTS, ME)
  return 1
end
return 0
)lua";

// KEYS: log, n. ARGV: after, max. Returns {newest cursor, oldest cursor kept (newest + 1: none),
// entries after `after` (none when `after` is past the newest or older than the oldest kept)}.
constexpr char kReadScript[] = R"lua(
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
local after = tonumber(ARGV[1])
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local oldest = n + 1
if #head > 0 then oldest = tonumber(string.match(head[1][1], '^(%d+)')) end
if after > n or after + 1 < oldest then return {n, oldest, {}} end
return {n, oldest, redis.call('XRANGE', KEYS[1], (after + 1) .. '-0', '+', 'COUNT', ARGV[2])}
)lua";

std::string Full(const char* body) {
  return redis_schema::Script(absl::StrCat(
      "local INST_PREFIX = '", redis_schema::PresenceInstanceKey(""), "'\n", kCommon, body));
}

const std::string& Sha(const char* body) {
  // One per script body; computed once.
  static const std::string batch = redis::Connection::ScriptSha(Full(kBatchScript));
  static const std::string sweep = redis::Connection::ScriptSha(Full(kSweepScript));
  static const std::string bye = redis::Connection::ScriptSha(Full(kByeScript));
  static const std::string read = redis::Connection::ScriptSha(redis_schema::Script(kReadScript));
  if (body == kBatchScript) return batch;
  if (body == kSweepScript) return sweep;
  if (body == kByeScript) return bye;
  return read;
}

uint64_t IdCursor(std::string_view id) {
  uint64_t c = 0;
  size_t dash = id.find('-');
  (void)absl::SimpleAtoi(ToAbsl(id.substr(0, dash)), &c);
  return c;
}

// One stream entry [id, [field, value, ...]] as an event.
bool ParseEntry(const redis::Value& entry, Event* e) {
  if (entry.type != redis::Value::Type::kArray || entry.elements.size() != 2) return false;
  e->cursor = IdCursor(entry.elements[0].str);
  if (e->cursor == 0) return false;
  const auto& f = entry.elements[1].elements;
  for (size_t i = 0; i + 1 < f.size(); i += 2) {
    const std::string& name = f[i].str;
    const std::string& value = f[i + 1].str;
    if (name.size() != 1) continue;
    switch (name[0]) {
      case 'k': {
        int k = 0;
        (void)absl::SimpleAtoi(value, &k);
        if (k < 1 || k > 4) return false;
        e->kind = static_cast<Kind>(k);
        break;
      }
      case 'u':
        e->user_id = value;
        break;
      case 'c':
        e->connection_id = value;
        break;
      case 'd':
        e->device_id = value;
        break;
      case 'n':
        e->node_id = value;
        break;
      case 'r':
        e->reason = value;
        break;
      case 't': {
        int64_t ms = 0;
        (void)absl::SimpleAtoi(value, &ms);
        e->at = absl::FromUnixMillis(ms);
        break;
      }
      default:
        break;
    }
  }
  return true;
}

std::vector<Event> ParseEntries(const redis::Value& entries) {
  std::vector<Event> out;
  out.reserve(entries.elements.size());
  for (const redis::Value& entry : entries.elements) {
    Event e;
    if (ParseEntry(entry, &e)) out.push_back(std::move(e));
  }
  return out;
}

int64_t Element(const redis::Value& v, size_t i) {
  return i < v.elements.size() ? v.elements[i].AsInt() : 0;
}

bool IsArray(const absl::StatusOr<redis::Value>& v, size_t min) {
  return v.ok() && v->type == redis::Value::Type::kArray && v->elements.size() >= min;
}

constexpr absl::Duration kMinBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(5);

}  // namespace

RedisPresence::RedisPresence(RedisPresenceOptions options, redis::Router* commands,
                             redis::Router* tail, presence::Feed* feed, Hub* hub)
    : options_(std::move(options)),
      commands_(commands),
      tail_(tail),
      feed_(feed),
      hub_(hub),
      slot_(redis_schema::PresenceSlot()),
      instance_key_(redis_schema::PresenceInstanceKey(options_.instance)) {}

RedisPresence::~RedisPresence() { Stop(); }

std::vector<std::string> RedisPresence::Scripts() {
  return {Full(kBatchScript), Full(kSweepScript), Full(kByeScript),
          redis_schema::Script(kReadScript)};
}

std::vector<std::string> RedisPresence::Keys() const {
  return {redis_schema::PresenceLogKey(),      redis_schema::PresenceCounterKey(),
          redis_schema::PresenceUsersKey(),    redis_schema::PresenceLeavingKey(),
          redis_schema::PresenceLastNodeKey(), redis_schema::PresenceInstancesKey()};
}

void RedisPresence::Start() {
  stopped_.store(false);
  if (hub_ != nullptr && !flusher_.joinable()) {
    {
      absl::MutexLock lock(&flush_mu_);
      flush_stop_ = false;
    }
    flusher_ = std::thread([this] { FlushLoop(); });
    lingering_.store(true);
  }
  BeginTail();
}

void RedisPresence::Stop() {
  stopped_.store(true);
  lingering_.store(false);
  {
    absl::MutexLock lock(&flush_mu_);
    flush_stop_ = true;
  }
  if (flusher_.joinable()) flusher_.join();
}

void RedisPresence::FlushLoop() {
  absl::MutexLock lock(&flush_mu_);
  for (;;) {
    flush_mu_.Await(absl::Condition(
        +[](RedisPresence* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->flush_mu_) {
          return p->flush_wanted_ || p->flush_stop_;
        },
        this));
    if (flush_stop_) return;
    flush_wanted_ = false;
    flush_mu_.Unlock();
    absl::SleepFor(options_.linger);
    Pump();
    flush_mu_.Lock();
  }
}

size_t RedisPresence::outbox_size() const {
  absl::MutexLock lock(&mu_);
  return queued_reports_;
}

// ---- Reports ----

void RedisPresence::OnAdd(const Connection& connection) {
  if (hub_ == nullptr) return;
  const ConnectionInfo& info = connection.info();
  Op op;
  op.kind = 'C';
  op.user_id = info.user_id;
  op.connection_id = info.connection_id;
  op.device_id = info.device_id;
  Enqueue(std::move(op));
}

void RedisPresence::OnRemove(const Connection& connection, std::string_view reason) {
  if (hub_ == nullptr) return;
  const ConnectionInfo& info = connection.info();
  Op op;
  op.kind = 'D';
  op.user_id = info.user_id;
  op.connection_id = info.connection_id;
  op.device_id = info.device_id;
  op.reason = std::string(reason);
  Enqueue(std::move(op));
}

void RedisPresence::Enqueue(Op op) {
  {
    absl::MutexLock lock(&mu_);
    if (queued_reports_ >= options_.max_outbox) {
      GlobalMetrics().presence_reports_dropped.fetch_add(1, std::memory_order_relaxed);
      need_repair_ = true;  // once Redis answers, the set is made right against the hub
      if (uint64_t n = drops_.Hit(); n > 0) {
        spdlog::warn("presence: {} reports dropped (Redis unreachable, {} waiting)", n,
                     queued_reports_);
      }
      return;
    }
    outbox_.push_back(std::move(op));
    ++queued_reports_;
    // A full batch, or no linger thread (not started): at once. Otherwise the linger sends it
    // with whatever comes meanwhile (and a batch in flight takes it along when it returns).
    if (queued_reports_ < options_.max_batch && lingering_.load()) {
      absl::MutexLock flush(&flush_mu_);
      flush_wanted_ = true;
      return;
    }
  }
  Pump();
}

void RedisPresence::Pump() {
  if (stopped_.load()) return;
  std::vector<std::string> argv;
  size_t ops = 0;
  bool repair = false;
  {
    absl::MutexLock lock(&mu_);
    if (in_flight_ || outbox_.empty() || absl::Now() < retry_at_) return;
    in_flight_ = true;
    if (outbox_.front().kind == 'R') {
      repair = true;
    } else {
      argv = {"EVALSHA", Sha(kBatchScript), "6"};
      for (std::string& k : Keys()) argv.push_back(std::move(k));
      argv.push_back(options_.instance);
      argv.push_back(options_.node_id);
      argv.push_back(absl::StrCat(absl::ToInt64Milliseconds(options_.offline_delay)));
      argv.push_back(absl::StrCat(options_.max_events));
      argv.push_back(absl::StrCat(absl::ToInt64Milliseconds(options_.lease)));
      for (const Op& op : outbox_) {
        if (op.kind == 'R' || ops >= options_.max_batch) break;
        argv.push_back(std::string(1, op.kind));
        argv.push_back(op.user_id);
        argv.push_back(op.connection_id);
        argv.push_back(op.device_id);
        argv.push_back(op.reason);
        ++ops;
      }
    }
  }
  if (repair) {
    commands_->Command(slot_, {"HKEYS", instance_key_},
                       [this](absl::StatusOr<redis::Value> v) { OnRepairKeys(std::move(v)); });
  } else {
    commands_->Command(slot_, std::move(argv), [this, ops](absl::StatusOr<redis::Value> v) {
      OnBatchDone(ops, std::move(v));
    });
  }
}

void RedisPresence::Failed(const absl::Status& status) {
  backoff_ = std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
  retry_at_ = absl::Now() + backoff_;
  if (uint64_t n = batch_failures_.Hit(); n > 0) {
    spdlog::warn("presence: {} report batches failed ({} waiting), retrying: {}", n,
                 queued_reports_, status.ToString());
  }
}

void RedisPresence::OnBatchDone(size_t ops, absl::StatusOr<redis::Value> v) {
  {
    absl::MutexLock lock(&mu_);
    in_flight_ = false;
    if (!IsArray(v, 3)) {
      Failed(v.ok() ? absl::InternalError("unexpected reply to the presence batch") : v.status());
      return;
    }
    for (size_t i = 0; i < ops && !outbox_.empty(); ++i) outbox_.pop_front();
    queued_reports_ -= std::min(queued_reports_, ops);
    backoff_ = absl::ZeroDuration();
    retry_at_ = absl::InfinitePast();
    GlobalMetrics().presence_events.fetch_add(static_cast<uint64_t>(Element(*v, 1)),
                                              std::memory_order_relaxed);
    LeaseSeen(Element(*v, 2) == 1);
    if (need_repair_) QueueRepair();
  }
  Pump();
}

void RedisPresence::LeaseSeen(bool missing) {
  if (missing && leased_ && hub_ != nullptr && !gone_) {
    spdlog::warn(
        "presence: this instance's lease had ended (taken for dead, or Redis lost it); "
        "reporting its connections again");
    need_repair_ = true;
  }
  leased_ = true;
}

// The repair goes at the end of the outbox: the hub's connections now are what Redis must hold
// once the reports before it are applied; the reports after it are newer than this snapshot
// (and one the snapshot already shows is a no-op when it comes).
void RedisPresence::QueueRepair() {
  need_repair_ = false;
  if (hub_ == nullptr) return;
  auto live = std::make_shared<std::vector<Op>>();
  for (const auto& c : hub_->All()) {
    const ConnectionInfo& info = c->info();
    Op op;
    op.kind = 'C';
    op.user_id = info.user_id;
    op.connection_id = info.connection_id;
    op.device_id = info.device_id;
    live->push_back(std::move(op));
  }
  Op r;
  r.kind = 'R';
  r.live = std::move(live);
  outbox_.push_back(std::move(r));
}

// The repair at the head of the outbox, with what Redis holds of this instance: CONNECTED for
// live connections it lacks, DISCONNECTED for those it has that are gone; they take its place.
void RedisPresence::OnRepairKeys(absl::StatusOr<redis::Value> v) {
  {
    absl::MutexLock lock(&mu_);
    in_flight_ = false;
    if (!v.ok() || v->type != redis::Value::Type::kArray) {
      Failed(v.ok() ? absl::InternalError("unexpected reply to HKEYS") : v.status());
      return;
    }
    if (outbox_.empty() || outbox_.front().kind != 'R') return;  // cannot happen
    std::shared_ptr<std::vector<Op>> live = std::move(outbox_.front().live);
    outbox_.pop_front();
    absl::flat_hash_set<std::string> held;
    for (redis::Value& k : v->elements) held.insert(std::move(k.str));
    std::vector<Op> ops;
    absl::flat_hash_set<std::string_view> alive;
    for (Op& op : *live) {
      alive.insert(op.connection_id);
      if (!held.contains(op.connection_id)) ops.push_back(op);
    }
    const size_t connected = ops.size();
    for (const std::string& id : held) {
      if (alive.contains(id)) continue;
      Op op;
      op.kind = 'D';
      op.connection_id = id;
      op.reason = "closed";
      ops.push_back(std::move(op));
    }
    if (!ops.empty()) {
      spdlog::info("presence: reporting again: {} connected, {} closed", connected,
                   ops.size() - connected);
    }
    queued_reports_ += ops.size();
    outbox_.insert(outbox_.begin(), std::make_move_iterator(ops.begin()),
                   std::make_move_iterator(ops.end()));
  }
  Pump();
}

bool RedisPresence::Flush(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  bool drained = false;
  while (!drained) {
    Pump();  // a retry that waits for its backoff goes now if it is due
    {
      absl::MutexLock lock(&mu_);
      auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return outbox_.empty() && !in_flight_;
      };
      drained = empty();
      if (!drained) {
        mu_.AwaitWithTimeout(absl::Condition(&empty),
                             std::min(absl::Milliseconds(100), deadline - absl::Now()));
        drained = empty();
      }
    }
    if (drained || absl::Now() >= deadline) break;
  }
  if (!drained || hub_ == nullptr) return drained;
  {
    absl::MutexLock lock(&mu_);
    gone_ = true;  // no renewal from here on
  }
  auto done = std::make_shared<absl::Notification>();
  std::vector<std::string> argv{"EVALSHA", Sha(kByeScript), "6"};
  for (std::string& k : Keys()) argv.push_back(std::move(k));
  // ARGV: the instance, then the common ones the script does not use.
  for (std::string a :
       {options_.instance, std::string(), std::string("0"), std::string("0"), std::string("0")}) {
    argv.push_back(std::move(a));
  }
  commands_->Command(slot_, std::move(argv),
                     [done](absl::StatusOr<redis::Value>) { done->Notify(); });
  done->WaitForNotificationWithTimeout(std::max(deadline - absl::Now(), absl::ZeroDuration()));
  return true;
}

// ---- The sweep ----

void RedisPresence::OnTick() {
  if (stopped_.load()) return;
  Pump();
  if (!sweeping_.exchange(true)) Sweep("", [this] { sweeping_.store(false); });
  if (tail_ != nullptr && !tailing_.load()) BeginTail();
  if (feed_ != nullptr) feed_->Trim();
}

void RedisPresence::OnCommandsUp() { Pump(); }

void RedisPresence::NodeLost(const std::string& instance) {
  Sweep(instance, [] {});
}

void RedisPresence::Sweep(const std::string& force_dead, absl::AnyInvocable<void()> done) {
  if (stopped_.load()) return done();
  std::string me;
  if (hub_ != nullptr) {
    absl::MutexLock lock(&mu_);
    if (!gone_) me = options_.instance;
  }
  std::vector<std::string> argv{"EVALSHA", Sha(kSweepScript), "6"};
  for (std::string& k : Keys()) argv.push_back(std::move(k));
  argv.push_back(std::move(me));
  argv.push_back(options_.node_id);
  argv.push_back(absl::StrCat(absl::ToInt64Milliseconds(options_.offline_delay)));
  argv.push_back(absl::StrCat(options_.max_events));
  argv.push_back(absl::StrCat(absl::ToInt64Milliseconds(options_.lease)));
  argv.push_back(absl::StrCat(options_.max_offline));
  argv.push_back(absl::StrCat(absl::ToInt64Milliseconds(options_.retention)));
  argv.push_back(absl::StrCat(options_.max_lost));
  argv.push_back(force_dead);
  commands_->Command(slot_, std::move(argv),
                     [this, done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
                       if (!IsArray(v, 4)) {
                         if (uint64_t n = sweep_failures_.Hit(); n > 0) {
                           spdlog::warn("presence: {} sweeps failed: {}", n,
                                        v.ok() ? "unexpected reply" : v.status().ToString());
                         }
                         return done();
                       }
                       GlobalMetrics().presence_events.fetch_add(
                           static_cast<uint64_t>(Element(*v, 1)), std::memory_order_relaxed);
                       bool repair;
                       {
                         absl::MutexLock lock(&mu_);
                         LeaseSeen(Element(*v, 2) == 1);
                         repair = need_repair_;
                         if (repair) QueueRepair();
                       }
                       if (repair) Pump();
                       if (Element(*v, 3) == 1 && !stopped_.load())
                         return Sweep("", std::move(done));
                       done();
                     });
}

// ---- The tail ----

void RedisPresence::BeginTail() {
  if (stopped_.load() || tail_ == nullptr || feed_ == nullptr) return;
  if (tailing_.exchange(true)) return;
  tail_->Command(slot_, {"GET", redis_schema::PresenceCounterKey()},
                 [this](absl::StatusOr<redis::Value> v) {
                   if (!v.ok() || stopped_.load()) {
                     tailing_.store(false);
                     return;
                   }
                   const uint64_t newest = v->is_nil() ? 0 : static_cast<uint64_t>(v->AsInt());
                   // At start, or when the log went back (Redis lost it): the feed starts over
                   // from the newest. Otherwise the tail goes on where it was (XREAD returns what
                   // came meanwhile, or the feed starts over at a gap the trim left).
                   if (!tail_started_.load() || newest < tail_last_) {
                     feed_->Reset(newest);
                     tail_last_ = newest;
                     tail_started_.store(true);
                   }
                   ReadTail();
                 });
}

void RedisPresence::ReadTail() {
  tail_->Command(
      slot_,
      {"XREAD", "BLOCK", absl::StrCat(absl::ToInt64Milliseconds(options_.block)), "COUNT", "1000",
       "STREAMS", redis_schema::PresenceLogKey(), absl::StrCat(tail_last_, "-0")},
      [this](absl::StatusOr<redis::Value> v) {
        if (stopped_.load()) return tailing_.store(false);
        if (!v.ok()) {
          if (uint64_t n = tail_failures_.Hit(); n > 0) {
            spdlog::warn("presence: {} reads of the log failed: {}", n, v.status().ToString());
          }
          return tailing_.store(false);  // started again by the next tick
        }
        // nil (nothing within the block time), or [[key, [entry, ...]]].
        if (v->type == redis::Value::Type::kArray && !v->elements.empty() &&
            v->elements[0].elements.size() == 2) {
          std::vector<Event> events = ParseEntries(v->elements[0].elements[1]);
          if (!events.empty()) {
            tail_last_ = events.back().cursor;
            feed_->Publish(std::move(events));
          }
        }
        ReadTail();
      });
}

// ---- Reads ----

void RedisPresence::ReadLog(uint64_t after, size_t max,
                            absl::AnyInvocable<void(absl::StatusOr<Page>)> done) {
  commands_->Command(slot_,
                     {"EVALSHA", Sha(kReadScript), "2", redis_schema::PresenceLogKey(),
                      redis_schema::PresenceCounterKey(), absl::StrCat(after),
                      absl::StrCat(std::max<size_t>(max, 1))},
                     [after, done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
                       if (!v.ok()) return done(v.status());
                       if (!IsArray(v, 3))
                         return done(absl::InternalError("unexpected reply to a presence read"));
                       const uint64_t newest = static_cast<uint64_t>(Element(*v, 0));
                       const uint64_t oldest = static_cast<uint64_t>(Element(*v, 1));
                       Page page;
                       if (after > newest) {
                         page.resync = true;
                         page.resync_from = newest;
                       } else if (after + 1 < oldest) {
                         page.resync = true;
                         page.resync_from = oldest - 1;
                       } else {
                         page.events = ParseEntries(v->elements[2]);
                       }
                       done(std::move(page));
                     });
}

}  // namespace push
