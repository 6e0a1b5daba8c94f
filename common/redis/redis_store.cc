#include "common/redis/redis_store.h"

#include <variant>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/ids.h"
#include "common/base/metrics.h"
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
if ARGV[3] == '1' then
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
local keep = tonumber(ARGV[5])
for _, k in ipairs({sk, ik}) do
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

// KEYS: s, m. ARGV: after ('' = the delivered cursor), max_messages, max_bytes, now_ms, user,
// legacy.
// Returns {after, last_seq, more, then seq, id, ts, expires, data for each message}. Messages past
// the committed seq (com, --redis_wait_replicas) are not read.
constexpr char kReadScript[] = R"lua(
local sk, mk = KEYS[1], KEYS[2]
adopt_legacy(ARGV[5], ARGV[6])
local m = redis.call('HMGET', mk, 'seq', 'cur', 'com')
local seq = tonumber(m[1]) or 0
local last = tonumber(m[3]) or seq
local after = tonumber(ARGV[1]) or tonumber(m[2]) or 0
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

// KEYS: m. ARGV: seq. The cursor never moves backwards nor past the last seq (a client is only
// sent committed messages, but the committed mark may lag behind them after a failover).
constexpr char kCursorScript[] = R"lua(
local m = redis.call('HMGET', KEYS[1], 'seq', 'cur')
local last = tonumber(m[1])
if not last then return 0 end
local c = math.min(tonumber(ARGV[1]), last)
if c > (tonumber(m[2]) or 0) then redis.call('HSET', KEYS[1], 'cur', c) end
return c
)lua";

// KEYS: s, i, m. ARGV: user, legacy. Messages and keys go; the numbering stays and the cursor
// jumps to the end.
constexpr char kPurgeScript[] = R"lua(
adopt_legacy(ARGV[1], ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2])
local m = redis.call('HMGET', KEYS[3], 'seq', 'com')
local last = m[2] or m[1]
if last then redis.call('HSET', KEYS[3], 'cur', last) end
return 0
)lua";

const std::string& AppendSha() {
  static const std::string sha = redis_schema::ScriptSha(kAppendScript);
  return sha;
}
const std::string& CommitSha() {
  static const std::string sha = redis_schema::ScriptSha(kCommitScript);
  return sha;
}
const std::string& ReadSha() {
  static const std::string sha = redis_schema::ScriptSha(kReadScript);
  return sha;
}
const std::string& CursorSha() {
  static const std::string sha = redis_schema::ScriptSha(kCursorScript);
  return sha;
}
const std::string& PurgeSha() {
  static const std::string sha = redis_schema::ScriptSha(kPurgeScript);
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
      legacy_(router->cluster() ? "0" : "1") {}

std::vector<std::string> RedisStore::Scripts() {
  return {redis_schema::Script(kAppendScript), redis_schema::Script(kCommitScript),
          redis_schema::Script(kReadScript), redis_schema::Script(kCursorScript),
          redis_schema::Script(kPurgeScript)};
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
  std::vector<std::string> argv{"EVALSHA",
                                ReadSha(),
                                "2",
                                redis_schema::StreamKey(request.user_id),
                                redis_schema::MetaKey(request.user_id),
                                request.after ? std::to_string(*request.after) : "",
                                std::to_string(std::max<size_t>(1, request.max_messages)),
                                std::to_string(request.max_bytes),
                                std::to_string(absl::ToUnixMillis(clock_->Now())),
                                request.user_id,
                                legacy_};
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

void RedisStore::AdvanceCursor(std::string_view user_id, uint64_t seq) {
  router_->Command(
      redis_schema::UserSlot(user_id),
      {"EVALSHA", CursorSha(), "1", redis_schema::MetaKey(user_id), std::to_string(seq)},
      [](absl::StatusOr<redis::Value>) {});
}

void RedisStore::Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) {
  router_->Command(
      redis_schema::UserSlot(user_id),
      {"EVALSHA", PurgeSha(), "3", redis_schema::StreamKey(user_id), redis_schema::IdsKey(user_id),
       redis_schema::MetaKey(user_id), std::string(user_id), legacy_},
      [done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
        done(v.ok() ? absl::OkStatus() : v.status());
      });
}

}  // namespace push::store
