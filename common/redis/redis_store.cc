#include "common/redis/redis_store.h"

#include <algorithm>
#include <utility>
#include <variant>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/ids.h"
#include "common/base/metrics.h"
#include "common/base/strings.h"
#include "common/redis/redis_schema.h"
#include "spdlog/spdlog.h"

namespace push::store {
namespace {

// KEYS: s, m, i, c of the user. ARGV: user, id, caller_id (1 = the caller's idempotency key),
// data, ttl_ms, history, now_ms, expires_ms, verb (PUBLISH or SPUBLISH; '' = --redis_wait_replicas:
// store only, kCommitScript publishes once the replicas have it), legacy (1: one Redis, adopt an
// older pushd's keys).
// Returns {1, seq, ts, data, expires} for a retained duplicate; {2, seq} for a new message stored
// and not published yet, or {2, seq, ts, data, expires} for an earlier one still uncommitted
// (both wait for WAIT and the commit); else {0, seq, delivered}.
constexpr char kAppendScript[] = R"lua(
local sk, mk, ik, ck = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local u, id = ARGV[1], ARGV[2]
local now = tonumber(ARGV[7])
local verb = ARGV[9]
adopt_legacy(u, ARGV[10])
if ARGV[3] == '1' then
  local old = redis.call('HGET', ik, id)
  if old then
    local e = redis.call('XRANGE', sk, '0-'..old, '0-'..old)
    if #e > 0 then
      local r = {}
      local f = e[1][2]
      for k = 1, #f, 2 do r[f[k]] = f[k + 1] end
      if tonumber(r.e) > now then
        local com = tonumber(redis.call('HGET', mk, 'com'))
        if verb == '' and com and tonumber(old) > com then
          -- Stored by an attempt whose replicas did not confirm it: this one waits for them.
          -- The write makes this connection's WAIT cover the first attempt's append, which
          -- the replication stream carried before it.
          redis.call('HSET', mk, 'pend', old)
          return {2, tonumber(old), r.t, r.d, r.e}
        end
        return {1, tonumber(old), r.t, r.d, r.e}
      end
    end
  end
end
if verb == '' then
  -- Everything stored before waiting for replicas was visible: it counts as committed.
  if redis.call('HEXISTS', mk, 'com') == 0 then
    redis.call('HSET', mk, 'com', redis.call('HGET', mk, 'seq') or 0)
  end
else
  redis.call('HDEL', mk, 'com')
end
local seq = redis.call('HINCRBY', mk, 'seq', 1)
local hist = tonumber(ARGV[6])
redis.call('XADD', sk, 'MAXLEN', hist, '0-'..seq, 'i', id, 't', ARGV[7], 'e', ARGV[8],
           'd', ARGV[4])
-- An id the server made is a key too while waiting for replicas: a push they did not confirm
-- fails telling the caller to retry with it.
if ARGV[3] == '1' or verb == '' then
  redis.call('HSET', ik, id, seq)
  -- Keys of messages trimmed by MAXLEN are dropped in bulk now and then (amortised O(1)).
  if redis.call('HLEN', ik) > 2 * hist + 16 then
    local all = redis.call('HGETALL', ik)
    for k = 1, #all, 2 do
      if tonumber(all[k + 1]) <= seq - hist then redis.call('HDEL', ik, all[k]) end
    end
  end
end
-- Messages and keys live while a message may still be read. The numbering (m, a few dozen
-- bytes) never expires: a stream that started over at 1 would make a client resuming with an
-- old `since` miss messages without a gap frame.
-- The keys only outlive their messages longer: i is only refreshed when this message is in it.
local keep = tonumber(ARGV[5])
local touched = {sk}
if ARGV[3] == '1' then touched[2] = ik end
for _, k in ipairs(touched) do
  local p = redis.call('PTTL', k)
  if p == -1 or (p >= 0 and p < keep) then redis.call('PEXPIRE', k, keep) end
end
if verb == '' then return {2, seq} end
-- To the instances subscribed to the user's channel: no scan of the user's connections.
local n = redis.call(verb, user_channel(u), routed_message(u, seq, id, ARGV[7], ARGV[8], ARGV[4]))
local delivered = 0
if n > 0 then delivered = redis.call('HLEN', ck) end
return {0, seq, delivered}
)lua";

// --redis_wait_replicas: the replicas hold everything up to seq. KEYS: s, m, c. ARGV: user, seq,
// verb. Makes the stored messages up to seq visible to reads and publishes the ones that were
// not yet; returns the user's connections (as the append does).
constexpr char kCommitScript[] = R"lua(
local sk, mk, ck = KEYS[1], KEYS[2], KEYS[3]
local u, seq, verb = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local com = tonumber(redis.call('HGET', mk, 'com')) or 0
if seq <= com then return redis.call('HLEN', ck) end
redis.call('HSET', mk, 'com', seq)
local n = 0
for _, e in ipairs(redis.call('XRANGE', sk, '(0-'..com, '0-'..seq)) do
  local r, f = {}, e[2]
  for k = 1, #f, 2 do r[f[k]] = f[k + 1] end
  n = redis.call(verb, user_channel(u), routed_message(u, string.sub(e[1], 3), r.i, r.t, r.e, r.d))
end
if n > 0 then return redis.call('HLEN', ck) end
return 0
)lua";

// KEYS: s, m, d. ARGV: after ('' = the delivered cursor), max_messages, max_bytes, now_ms, user,
// legacy, device ('' = none: the user's cursor), device_ttl_ms, max_devices.
// Returns {after, last_seq, more, then seq, id, ts, expires, data for each message}. Messages past
// the committed seq (com, --redis_wait_replicas) are not read. A device's read is its activity:
// the device is kept (made when new) with its last activity now.
constexpr char kReadScript[] = R"lua(
local sk, mk = KEYS[1], KEYS[2]
adopt_legacy(ARGV[5], ARGV[6])
local m = redis.call('HMGET', mk, 'seq', 'cur', 'com')
local seq = tonumber(m[1]) or 0
local last = tonumber(m[3]) or seq
local cursor = tonumber(m[2]) or 0
if ARGV[7] ~= '' and m[1] then
  local c, w, a = device_get(KEYS[3], ARGV[7], tonumber(ARGV[4]), tonumber(ARGV[8]))
  device_put(KEYS[3], ARGV[7], c, w, a, tonumber(ARGV[4]), tonumber(ARGV[8]), tonumber(ARGV[9]))
  cursor = c
end
local after = tonumber(ARGV[1]) or cursor
-- A client can be past the committed mark: after a failover the new primary holds every entry
-- a client was sent (WAIT confirmed them) but may miss the last commit's mark. It is caught up,
-- not ahead of the stream (which would make it start over).
if after > last and after <= seq then return {after, after, 0} end
local out = {after, last, 0}
if after >= last then return out end
local maxn, maxb, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local start = '(0-'..after
local n, bytes = 0, 0
while true do
  local es = redis.call('XRANGE', sk, start, '0-'..last, 'COUNT', 64)
  if #es == 0 then break end
  for _, e in ipairs(es) do
    local f, r = e[2], {}
    for k = 1, #f, 2 do r[f[k]] = f[k + 1] end
    local seq = string.sub(e[1], 3)
    if tonumber(r.e) > now then
      -- The /ws frame's size: {"type":"message","seq":S,"id":"I","ts":T,"data":D}
      local size = FRAME_OVERHEAD + #seq + #r.i + #r.t + #r.d
      if n > 0 and (n >= maxn or bytes + size > maxb) then out[3] = 1; return out end
      bytes = bytes + size
      n = n + 1
      out[#out + 1] = seq; out[#out + 1] = r.i; out[#out + 1] = r.t
      out[#out + 1] = r.e; out[#out + 1] = r.d
    end
    start = '('..e[1]
  end
end
return out
)lua";

// A batch of cursor moves, of users whose slots one shard serves (the keys of one user share a
// slot; a batch may reach several slots of one node, hence the flag). KEYS[1]: the first move's m
// (the batch goes where that slot is served). ARGV: per move, 8 fields: m, d, seq, progress (w:
// written without ack=1, p: written to an ack=1 connection, a: acked, t: only the activity of a
// device still kept), device ('' = the connections without one, whose marks are cur, w and a in
// m), now_ms, device_ttl_ms, max_devices. The marks never move backwards nor past the last seq (a
// client is only sent committed messages, but the committed mark may lag behind them after a
// failover). Nothing for a user without a stream. A move whose slot this node no longer serves
// stops the script with an error; the moves before it stay done (each is monotonic, so sending
// them again is harmless).
constexpr char kCursorScript[] = R"lua(#!lua flags=allow-cross-slot-keys
local function move(mk, dk, seq, kind, dev, now, ttl, max)
  local m = redis.call('HMGET', mk, 'seq', 'cur', 'w', 'a')
  local last = tonumber(m[1])
  if not last then return end
  seq = math.min(seq, last)
  if dev == '' then
    local c, w, a = tonumber(m[2]) or 0, tonumber(m[3]) or 0, tonumber(m[4]) or 0
    local set = {}
    if seq > w then set[#set + 1] = 'w'; set[#set + 1] = seq end
    if kind ~= 'p' and seq > c then set[#set + 1] = 'cur'; set[#set + 1] = seq end
    if kind == 'a' and seq > a then set[#set + 1] = 'a'; set[#set + 1] = seq end
    if #set > 0 then redis.call('HSET', mk, unpack(set)) end
    return
  end
  local c, w, a, kept = device_get(dk, dev, now, ttl)
  -- A touch (the end of a connection) only refreshes a device still kept.
  if kind == 't' and not kept then return end
  if kind ~= 't' then
    w = math.max(w, seq)
    if kind ~= 'p' then c = math.max(c, seq) end
    if kind == 'a' then a = math.max(a, seq) end
  end
  device_put(dk, dev, c, w, a, now, ttl, max)
end
for i = 1, #ARGV, 8 do
  move(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4],
       tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]))
end
return #ARGV / 8
)lua";

// KEYS: s, m, i, d. ARGV: message_id ('' = by seq), seq, now_ms, device_ttl_ms, user, legacy.
// Returns {-1} when the message id is not retained, {-2, last} when the seq is past the last
// (committed) one, else {seq, then device, state (1 written, 2 acked), cursor for each device
// whose written or acked mark reached seq}; the connections without a device are device ''.
constexpr char kReceiptsScript[] = R"lua(
local sk, mk, ik, dk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, now, ttl = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
adopt_legacy(ARGV[5], ARGV[6])
local m = redis.call('HMGET', mk, 'seq', 'cur', 'w', 'a', 'com')
local last = tonumber(m[5]) or tonumber(m[1]) or 0
local seq
if id ~= '' then
  local function fields(e)
    local r, f = {}, e[2]
    for k = 1, #f, 2 do r[f[k]] = f[k + 1] end
    return r
  end
  local entry
  local key = redis.call('HGET', ik, id)
  if key then
    local es = redis.call('XRANGE', sk, '0-'..key, '0-'..key)
    if #es > 0 and fields(es[1]).i == id then entry = es[1] end
  else
    -- Ids the server made have no idempotency key: look through the stream, newest first (at
    -- most --history_size entries).
    local start = '+'
    while not entry do
      local es = redis.call('XREVRANGE', sk, start, '-', 'COUNT', 128)
      if #es == 0 then break end
      for _, e in ipairs(es) do
        if fields(e).i == id then entry = e; break end
        start = '('..e[1]
      end
    end
  end
  if not entry or tonumber(fields(entry).e) <= now then return {-1} end
  seq = tonumber(string.sub(entry[1], 3))
  if seq > last then return {-1} end
else
  seq = tonumber(ARGV[2])
  if seq < 1 or seq > last then return {-2, last} end
end
local out = {seq}
local function add(dev, c, w, a)
  if math.max(w, a) >= seq then
    out[#out + 1] = dev
    out[#out + 1] = (a >= seq) and 2 or 1
    out[#out + 1] = c
  end
end
add('', tonumber(m[2]) or 0, tonumber(m[3]) or 0, tonumber(m[4]) or 0)
local all = redis.call('HGETALL', dk)
for k = 1, #all, 2 do
  local c, w, a, t = device_parse(all[k + 1])
  if c and t + ttl > now then add(all[k], c, w, a) end
end
return out
)lua";

// KEYS: s, i, m, d. ARGV: user, legacy. Messages and keys go; the numbering stays and the cursor
// (and every device's) jumps to the end.
constexpr char kPurgeScript[] = R"lua(
adopt_legacy(ARGV[1], ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2])
local m = redis.call('HMGET', KEYS[3], 'seq', 'com')
local last = m[2] or m[1]
if last then
  redis.call('HSET', KEYS[3], 'cur', last)
  local all = redis.call('HGETALL', KEYS[4])
  for k = 1, #all, 2 do
    local c, w, a, t = device_parse(all[k + 1])
    if c then redis.call('HSET', KEYS[4], all[k], device_value(last, w, a, t)) end
  end
end
return 0
)lua";

// What the read, cursor, receipts and purge scripts share: a user's devices are the hash d, field
// device id -> "<cursor> <written> <acked> <last activity, ms>". A device whose last activity is
// --device_ttl old is expired: read as absent and dropped when room is needed; the hash's own
// expiry, set to the ttl at each activity, drops it once every device has expired.
constexpr char kDevicesLua[] = R"lua(
local function device_parse(v)
  local c, w, a, t = string.match(v, '^(%d+) (%d+) (%d+) (%d+)$')
  if not c then return nil end
  return tonumber(c), tonumber(w), tonumber(a), tonumber(t)
end
local function device_value(c, w, a, t)
  return string.format('%d %d %d %d', c, w, a, t)
end
-- The device's cursor, written and acked marks, and whether it is kept (0s and false when new or
-- expired).
local function device_get(dk, dev, now, ttl)
  local v = redis.call('HGET', dk, dev)
  if v then
    local c, w, a, t = device_parse(v)
    if c and t + ttl > now then return c, w, a, true end
  end
  return 0, 0, 0, false
end
-- Stores the device with its last activity now. A device new to the hash that takes it past
-- max_devices drops the expired ones first, then the least recently active (ties: the smallest
-- id): bounded work, since the hash never holds more than max_devices + 1 fields.
local function device_put(dk, dev, c, w, a, now, ttl, max)
  local added = redis.call('HSET', dk, dev, device_value(c, w, a, now))
  if added == 1 and redis.call('HLEN', dk) > max then
    local all = redis.call('HGETALL', dk)
    local keep = {}
    for k = 1, #all, 2 do
      if all[k] ~= dev then
        local _, _, _, t = device_parse(all[k + 1])
        if not t or t + ttl <= now then
          redis.call('HDEL', dk, all[k])
        else
          keep[#keep + 1] = {t, all[k]}
        end
      end
    end
    if #keep + 1 > max then
      table.sort(keep, function(x, y)
        if x[1] ~= y[1] then return x[1] < y[1] end
        return x[2] < y[2]
      end)
      for k = 1, #keep + 1 - max do redis.call('HDEL', dk, keep[k][2]) end
    end
  end
  redis.call('PEXPIRE', dk, ttl)
end
)lua";

// The devices' functions after the script's shebang line, if it has one.
std::string WithDevices(const char* script) {
  auto [shebang, body] = redis_schema::SplitShebang(script);
  return absl::StrCat(ToAbsl(shebang), kDevicesLua, ToAbsl(body));
}

const std::string& AppendSha() {
  static const std::string sha = redis_schema::ScriptSha(kAppendScript);
  return sha;
}
const std::string& CommitSha() {
  static const std::string sha = redis_schema::ScriptSha(kCommitScript);
  return sha;
}
const std::string& ReadSha() {
  static const std::string sha = redis_schema::ScriptSha(WithDevices(kReadScript));
  return sha;
}
const std::string& CursorSha() {
  static const std::string sha = redis_schema::ScriptSha(WithDevices(kCursorScript));
  return sha;
}
const std::string& ReceiptsSha() {
  static const std::string sha = redis_schema::ScriptSha(WithDevices(kReceiptsScript));
  return sha;
}
const std::string& PurgeSha() {
  static const std::string sha = redis_schema::ScriptSha(WithDevices(kPurgeScript));
  return sha;
}

absl::Status Malformed(const char* what) {
  return absl::InternalError(absl::StrCat("unexpected Redis answer to ", what));
}

}  // namespace

RedisStore::RedisStore(RedisStoreOptions options, redis::Router* router, Clock* clock)
    : options_(options),
      router_(router),
      clock_(clock),
      verb_(router->cluster() ? "SPUBLISH" : "PUBLISH"),
      legacy_(router->cluster() ? "0" : "1") {
  flusher_ = std::thread([this] { FlushLoop(); });
}

namespace {
bool Zero(int64_t* n) { return *n == 0; }
}  // namespace

RedisStore::~RedisStore() {
  Stop();
  // The batches' callbacks use this store: every one runs (a connection answers or fails each
  // command within its timeout, or at once when it stops) before the store goes.
  absl::MutexLock lock(&batch_mu_);
  if (!batch_mu_.AwaitWithTimeout(absl::Condition(&Zero, &batches_in_flight_), absl::Seconds(30))) {
    spdlog::error("redis: cursor batches unanswered after 30 s; waiting for them");
    batch_mu_.Await(absl::Condition(&Zero, &batches_in_flight_));
  }
}

void RedisStore::Stop() {
  {
    absl::MutexLock lock(&batch_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (flusher_.joinable()) flusher_.join();
  FlushShard(kAllShards);
}

void RedisStore::FlushLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&batch_mu_);
      batch_mu_.Await(absl::Condition(
          +[](RedisStore* s)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return s->stopping_ || !s->batches_.empty(); },
          this));
      // The moves of the next linger gather behind the first.
      batch_mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.cursor_linger);
      if (stopping_) return;  // Stop() sends the rest
    }
    FlushShard(kAllShards);
  }
}

void RedisStore::FlushShard(int shard) {
  // Taken and queued on the connections as one step: a read that flushes its shard after the
  // flusher took that shard's batch waits until the batch is queued ahead of the read.
  absl::MutexLock send_lock(&send_mu_);
  std::vector<std::vector<Move>> out;
  {
    absl::MutexLock lock(&batch_mu_);
    if (shard == kAllShards) {
      out.reserve(batches_.size());
      for (auto& [_, batch] : batches_) out.push_back(std::move(batch.moves));
      batches_.clear();
    } else if (auto it = batches_.find(shard); it != batches_.end()) {
      out.push_back(std::move(it->second.moves));
      batches_.erase(it);
    }
  }
  for (auto& moves : out) Send(std::move(moves));
}

void RedisStore::Send(std::vector<Move> moves) {
  for (size_t begin = 0; begin < moves.size(); begin += kMaxMovesPerScript) {
    size_t end = std::min(moves.size(), begin + kMaxMovesPerScript);
    std::vector<std::string> argv{"EVALSHA", CursorSha(), "1", moves[begin].fields[0]};
    argv.reserve(4 + (end - begin) * kMoveFields);
    std::vector<Move> chunk;
    chunk.reserve(end - begin);
    for (size_t i = begin; i < end; ++i) {
      for (const std::string& f : moves[i].fields) argv.push_back(f);
      chunk.push_back(std::move(moves[i]));
    }
    {
      absl::MutexLock lock(&batch_mu_);
      ++batches_in_flight_;
    }
    const uint16_t slot = chunk.front().slot;
    router_->Command(
        slot, std::move(argv),
        [this, chunk = std::move(chunk)](absl::StatusOr<redis::Value> v) mutable {
          // A move whose slot is on another shard (the map changed) stops the script
          // with an error reply (INTERNAL): each move again, on its own shard. Not
          // when Redis is away or overloaded (UNAVAILABLE): the moves are dropped,
          // as a single move always was; a cursor only lags, its messages are
          // replayed, never lost.
          if (!v.ok() && v.status().code() == absl::StatusCode::kInternal && chunk.size() > 1) {
            for (Move& move : chunk) Send({std::move(move)});
          }
          absl::MutexLock lock(&batch_mu_);
          --batches_in_flight_;
        });
  }
}

bool RedisStore::FlushCursors(absl::Duration timeout) {
  FlushShard(kAllShards);
  absl::MutexLock lock(&batch_mu_);
  return batch_mu_.AwaitWithTimeout(absl::Condition(&Zero, &batches_in_flight_), timeout);
}

void RedisStore::FlushCursor(std::string_view user_id) {
  FlushShard(router_->ShardOf(redis_schema::UserSlot(user_id)));
}

std::vector<std::string> RedisStore::Scripts() {
  return {redis_schema::Script(kAppendScript),
          redis_schema::Script(kCommitScript),
          redis_schema::Script(WithDevices(kReadScript)),
          redis_schema::Script(WithDevices(kCursorScript)),
          redis_schema::Script(WithDevices(kReceiptsScript)),
          redis_schema::Script(WithDevices(kPurgeScript))};
}

namespace {

absl::StatusOr<AppendResult> StoredCopy(const std::vector<redis::Value>& e, uint64_t seq,
                                        std::string id) {
  if (e.size() < 5) return Malformed("append");
  AppendResult result;
  result.message = MakeMessage(seq, std::move(id), absl::FromUnixMillis(e[2].AsInt()),
                               absl::FromUnixMillis(e[4].AsInt()),
                               std::make_shared<const std::string>(e[3].str));
  return result;
}

}  // namespace

void RedisStore::Append(AppendRequest request,
                        absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done) {
  absl::Time now = clock_->Now();
  absl::Time expires = now + request.ttl;
  bool caller_id = !request.message_id.empty();
  std::string id = caller_id ? std::move(request.message_id) : NewMessageId();
  int64_t now_ms = absl::ToUnixMillis(now);
  int64_t expires_ms = absl::ToUnixMillis(expires);
  const uint16_t slot = redis_schema::UserSlot(request.user_id);
  const bool wait = options_.wait_replicas;
  std::string user = request.user_id;
  std::vector<std::string> argv{"EVALSHA",
                                AppendSha(),
                                "4",
                                redis_schema::StreamKey(user),
                                redis_schema::MetaKey(user),
                                redis_schema::IdsKey(user),
                                redis_schema::ConnectionsKey(user),
                                std::move(request.user_id),
                                id,
                                caller_id ? "1" : "0",
                                *request.payload,
                                std::to_string(absl::ToInt64Milliseconds(request.ttl)),
                                std::to_string(options_.history_size),
                                std::to_string(now_ms),
                                std::to_string(expires_ms),
                                wait ? std::string() : verb_,
                                legacy_};
  auto on_reply = [this, slot, user = std::move(user), payload = std::move(request.payload),
                   id = std::move(id), now, expires, caller_id,
                   done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
    if (!v.ok()) {
      if (!redis::ReplicasShort(v.status())) return done(v.status());
      // Stored, maybe to surface later: say how to retry without storing it twice.
      return done(redis::MarkReplicasShort(absl::Status(
          v.status().code(),
          absl::StrCat(v.status().message(), "; retry with ",
                       caller_id ? std::string("the same message_id")
                                 : absl::StrCat("message_id \"", id, "\" (the one it was given)"),
                       " to have it stored once"))));
    }
    const auto& e = v->elements;
    if (v->type != redis::Value::Type::kArray || e.size() < 2) {
      return done(Malformed("append"));
    }
    uint64_t seq = static_cast<uint64_t>(e[1].AsInt());
    const int64_t kind = e[0].AsInt();
    if (kind == 1) {
      absl::StatusOr<AppendResult> result = StoredCopy(e, seq, std::move(id));
      if (result.ok()) result->duplicate = true;
      return done(std::move(result));
    }
    if (kind == 0) {
      if (e.size() < 3) return done(Malformed("append"));
      AppendResult result;
      result.message = MakeMessage(seq, std::move(id), now, expires, std::move(payload));
      result.delivered = static_cast<uint32_t>(e[2].AsInt());
      return done(std::move(result));
    }
    // Stored, and the replicas have it (the command was durable): commit it.
    absl::StatusOr<AppendResult> result;
    if (e.size() >= 5) {
      result = StoredCopy(e, seq, std::move(id));
    } else {
      result = AppendResult{};
      result->message = MakeMessage(seq, std::move(id), now, expires, std::move(payload));
    }
    if (!result.ok()) return done(result.status());
    Commit(slot, user, seq, std::move(*result), std::move(done));
  };
  if (wait) {
    router_->Durable(slot, std::move(argv), std::move(on_reply));
  } else {
    router_->Command(slot, std::move(argv), std::move(on_reply));
  }
}

void RedisStore::Commit(uint16_t slot, const std::string& user, uint64_t seq, AppendResult result,
                        absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done) {
  router_->Command(
      slot,
      {"EVALSHA", CommitSha(), "3", redis_schema::StreamKey(user), redis_schema::MetaKey(user),
       redis_schema::ConnectionsKey(user), user, std::to_string(seq), verb_},
      [result = std::move(result), done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
        // The replicas hold the message: a failed commit still leaves it to become visible with
        // the user's next commit, but the caller cannot be told it is delivered.
        if (!v.ok()) return done(v.status());
        result.delivered = static_cast<uint32_t>(v->AsInt());
        done(std::move(result));
      });
}

void RedisStore::OnChannelMessage(std::string_view payload) {
  redis_schema::ChannelMessage message = redis_schema::DecodeChannelMessage(payload);
  if (auto* routed = std::get_if<redis_schema::RoutedMessage>(&message)) {
    if (sink_ != nullptr) sink_->OnPublication(routed->user_id, routed->message);
  } else if (auto* close = std::get_if<redis_schema::CloseCommand>(&message)) {
    if (on_close_command_) on_close_command_(*close);
  } else {
    spdlog::warn("redis: malformed channel message ignored ({} bytes)", payload.size());
  }
}

void RedisStore::Read(ReadRequest request,
                      absl::AnyInvocable<void(absl::StatusOr<ReadResult>)> done) {
  const uint16_t slot = redis_schema::UserSlot(request.user_id);
  FlushShard(router_->ShardOf(slot));  // the cursor the read starts from includes them
  std::vector<std::string> argv{"EVALSHA",
                                ReadSha(),
                                "3",
                                redis_schema::StreamKey(request.user_id),
                                redis_schema::MetaKey(request.user_id),
                                redis_schema::DevicesKey(request.user_id),
                                request.after ? std::to_string(*request.after) : "",
                                std::to_string(std::max<size_t>(1, request.max_messages)),
                                std::to_string(request.max_bytes),
                                std::to_string(absl::ToUnixMillis(clock_->Now())),
                                request.user_id,
                                legacy_,
                                request.device_id,
                                DeviceTtlMs(),
                                std::to_string(options_.devices.max_per_user)};
  router_->Command(
      slot, std::move(argv), [done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
        if (!v.ok()) return done(v.status());
        auto& e = v->elements;
        if (v->type != redis::Value::Type::kArray || e.size() < 3 || (e.size() - 3) % 5 != 0) {
          return done(Malformed("read"));
        }
        ReadResult result;
        result.after = static_cast<uint64_t>(e[0].AsInt());
        result.last_seq = static_cast<uint64_t>(e[1].AsInt());
        result.more = e[2].AsInt() == 1;
        result.messages.reserve((e.size() - 3) / 5);
        for (size_t i = 3; i + 4 < e.size(); i += 5) {
          result.messages.push_back(MakeMessage(
              static_cast<uint64_t>(e[i].AsInt()), e[i + 1].str,
              absl::FromUnixMillis(e[i + 2].AsInt()), absl::FromUnixMillis(e[i + 3].AsInt()),
              std::make_shared<const std::string>(std::move(e[i + 4].str))));
        }
        done(std::move(result));
      });
}

std::string RedisStore::DeviceTtlMs() const {
  return std::to_string(std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.devices.ttl)));
}

void RedisStore::Advance(std::string_view user_id, std::string_view device_id, uint64_t seq,
                         Progress progress) {
  const char* kind = progress == Progress::kWritten              ? "w"
                     : progress == Progress::kWrittenAwaitingAck ? "p"
                                                                 : "a";
  Cursor(user_id, device_id, seq, kind);
}

void RedisStore::TouchDevice(std::string_view user_id, std::string_view device_id) {
  if (device_id.empty()) return;
  Cursor(user_id, device_id, 0, "t");
}

void RedisStore::Cursor(std::string_view user_id, std::string_view device_id, uint64_t seq,
                        const char* kind) {
  // Without a device: the marks live in m, and the device arguments are not read.
  const bool device = !device_id.empty();
  Move move;
  move.slot = redis_schema::UserSlot(user_id);
  move.fields = {redis_schema::MetaKey(user_id),
                 redis_schema::DevicesKey(user_id),
                 std::to_string(seq),
                 kind,
                 std::string(device_id),
                 device ? std::to_string(absl::ToUnixMillis(clock_->Now())) : "0",
                 device ? DeviceTtlMs() : "0",
                 device ? std::to_string(options_.devices.max_per_user) : "0"};
  // Ids never contain '\n'.
  std::string key = absl::StrCat(ToAbsl(user_id), "\n", ToAbsl(device_id), "\n", kind);
  const int shard = router_->ShardOf(move.slot);
  {
    absl::MutexLock lock(&batch_mu_);
    if (!stopping_) {
      Batch& batch = batches_[shard];
      auto [it, added] = batch.index.try_emplace(std::move(key), batch.moves.size());
      if (added) {
        batch.moves.push_back(std::move(move));
      } else if (Move& kept = batch.moves[it->second]; seq >= std::stoull(kept.fields[2])) {
        kept = std::move(move);  // the highest seq, and the latest activity
      }
      return;
    }
  }
  Send({std::move(move)});
}

void RedisStore::Receipts(ReceiptsRequest request,
                          absl::AnyInvocable<void(absl::StatusOr<ReceiptsResult>)> done) {
  const std::string& user = request.user_id;
  const uint16_t slot = redis_schema::UserSlot(user);
  FlushShard(router_->ShardOf(slot));  // the marks it reports include them
  // Built before `request` moves into the callback.
  std::vector<std::string> argv{"EVALSHA",
                                ReceiptsSha(),
                                "4",
                                redis_schema::StreamKey(user),
                                redis_schema::MetaKey(user),
                                redis_schema::IdsKey(user),
                                redis_schema::DevicesKey(user),
                                request.message_id,
                                std::to_string(request.seq),
                                std::to_string(absl::ToUnixMillis(clock_->Now())),
                                DeviceTtlMs(),
                                user,
                                legacy_};
  router_->Command(
      slot, std::move(argv),
      [request = std::move(request),
       done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
        if (!v.ok()) return done(v.status());
        const auto& e = v->elements;
        if (v->type != redis::Value::Type::kArray || e.empty()) return done(Malformed("receipts"));
        const int64_t head = e[0].AsInt();
        if (head == -1) return done(NotRetainedError(request.user_id, request.message_id));
        if (head == -2) {
          if (e.size() < 2) return done(Malformed("receipts"));
          return done(
              PastLatestError(request.user_id, request.seq, static_cast<uint64_t>(e[1].AsInt())));
        }
        if (head < 1 || (e.size() - 1) % 3 != 0) return done(Malformed("receipts"));
        ReceiptsResult result;
        result.seq = static_cast<uint64_t>(head);
        for (size_t i = 1; i + 2 < e.size(); i += 3) {
          result.receipts.push_back(DeviceReceipt{e[i].str, e[i + 1].AsInt() == 2,
                                                  static_cast<uint64_t>(e[i + 2].AsInt())});
        }
        std::sort(result.receipts.begin(), result.receipts.end(),
                  [](const DeviceReceipt& a, const DeviceReceipt& b) {
                    return a.device_id < b.device_id;
                  });
        done(std::move(result));
      });
}

void RedisStore::Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) {
  // The cursors jump to the end after the moves made before the purge, not before.
  FlushShard(router_->ShardOf(redis_schema::UserSlot(user_id)));
  router_->Command(redis_schema::UserSlot(user_id),
                   {"EVALSHA", PurgeSha(), "4", redis_schema::StreamKey(user_id),
                    redis_schema::IdsKey(user_id), redis_schema::MetaKey(user_id),
                    redis_schema::DevicesKey(user_id), std::string(user_id), legacy_},
                   [done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
                     done(v.ok() ? absl::OkStatus() : v.status());
                   });
}

}  // namespace push::store
