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

// ARGV: user, data, id, caller_id (1 = the caller's idempotency key), ttl_ms, history, now_ms,
// expires_ms. Returns {1, seq, ts, data, expires} for a retained duplicate, else
// {0, seq, delivered}.
constexpr char kAppendScript[] = R"lua(
local u = ARGV[1]
local sk, mk, ik, ck = key_s(u), key_m(u), key_i(u), key_c(u)
local now = tonumber(ARGV[7])
if ARGV[4] == '1' then
  local old = redis.call('HGET', ik, ARGV[3])
  if old then
    local e = redis.call('XRANGE', sk, '0-'..old, '0-'..old)
    if #e > 0 then
      local r = {}
      local f = e[1][2]
      for k = 1, #f, 2 do r[f[k]] = f[k + 1] end
      if tonumber(r.e) > now then return {1, tonumber(old), r.t, r.d, r.e} end
    end
  end
end
local seq = redis.call('HINCRBY', mk, 'seq', 1)
local hist = tonumber(ARGV[6])
redis.call('XADD', sk, 'MAXLEN', hist, '0-'..seq, 'i', ARGV[3], 't', ARGV[7], 'e', ARGV[8],
           'd', ARGV[2])
if ARGV[4] == '1' then
  redis.call('HSET', ik, ARGV[3], seq)
  -- Keys of messages trimmed by MAXLEN are dropped in bulk now and then (amortised O(1)).
  if redis.call('HLEN', ik) > 2 * hist + 16 then
    local all = redis.call('HGETALL', ik)
    for k = 1, #all, 2 do
      if tonumber(all[k + 1]) <= seq - hist then redis.call('HDEL', ik, all[k]) end
    end
  end
end
-- Messages and keys live while a message may still be read. The numbering (m:<user>, a few
-- dozen bytes) never expires: a stream that started over at 1 would make a client resuming
-- with an old `since` miss messages without a gap frame.
local keep = tonumber(ARGV[5])
for _, k in ipairs({sk, ik}) do
  local p = redis.call('PTTL', k)
  if p == -1 or (p >= 0 and p < keep) then redis.call('PEXPIRE', k, keep) end
end
local delivered = 0
local fields = redis.call('HKEYS', ck)
if #fields > 0 then
  local per, order = {}, {}
  for _, f in ipairs(fields) do
    local inst = string.match(f, '^([^\n]*)\n')
    if inst then
      if not per[inst] then per[inst] = 0; order[#order + 1] = inst end
      per[inst] = per[inst] + 1
    end
  end
  local frame
  for _, inst in ipairs(order) do
    if redis.call('EXISTS', key_a(inst)) == 1 then
      frame = frame or routed_message(u, seq, ARGV[3], ARGV[7], ARGV[8], ARGV[2])
      redis.call('PUBLISH', channel(inst), frame)
      delivered = delivered + per[inst]
    else
      for _, f in ipairs(fields) do
        if string.sub(f, 1, #inst + 1) == inst..'\n' then redis.call('HDEL', ck, f) end
      end
    end
  end
end
return {0, seq, delivered}
)lua";

// ARGV: user, after ('' = the delivered cursor), max_messages, max_bytes, now_ms.
// Returns {after, last_seq, more, then seq, id, ts, expires, data for each message}.
constexpr char kReadScript[] = R"lua(
local u = ARGV[1]
local sk, mk = key_s(u), key_m(u)
local m = redis.call('HMGET', mk, 'seq', 'cur')
local last = tonumber(m[1]) or 0
local after = tonumber(ARGV[2]) or tonumber(m[2]) or 0
local out = {after, last, 0}
if after >= last then return out end
local maxn, maxb, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local start = '(0-'..after
local n, bytes = 0, 0
while true do
  local es = redis.call('XRANGE', sk, start, '+', 'COUNT', 64)
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

// ARGV: user, seq. The cursor never moves backwards nor past the last seq.
constexpr char kCursorScript[] = R"lua(
local mk = key_m(ARGV[1])
local m = redis.call('HMGET', mk, 'seq', 'cur')
local last = tonumber(m[1])
if not last then return 0 end
local c = math.min(tonumber(ARGV[2]), last)
if c > (tonumber(m[2]) or 0) then redis.call('HSET', mk, 'cur', c) end
return c
)lua";

// ARGV: user. Messages and keys go; the numbering stays and the cursor jumps to the end.
constexpr char kPurgeScript[] = R"lua(
local u = ARGV[1]
redis.call('DEL', key_s(u), key_i(u))
local last = redis.call('HGET', key_m(u), 'seq')
if last then redis.call('HSET', key_m(u), 'cur', last) end
return 0
)lua";

std::string Sha(const char* script) {
  return redis::Connection::ScriptSha(redis_schema::Script(script));
}

const std::string& AppendSha() {
  static const std::string sha = Sha(kAppendScript);
  return sha;
}
const std::string& ReadSha() {
  static const std::string sha = Sha(kReadScript);
  return sha;
}
const std::string& CursorSha() {
  static const std::string sha = Sha(kCursorScript);
  return sha;
}
const std::string& PurgeSha() {
  static const std::string sha = Sha(kPurgeScript);
  return sha;
}

absl::Status Malformed(const char* what) {
  return absl::InternalError(absl::StrCat("unexpected Redis answer to ", what));
}

}  // namespace

RedisStore::RedisStore(RedisStoreOptions options, redis::Connection* connection, Clock* clock)
    : options_(options), connection_(connection), clock_(clock) {}

std::vector<std::string> RedisStore::Scripts() {
  return {redis_schema::Script(kAppendScript), redis_schema::Script(kReadScript),
          redis_schema::Script(kCursorScript), redis_schema::Script(kPurgeScript)};
}

void RedisStore::Append(AppendRequest request,
                        absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done) {
  absl::Time now = clock_->Now();
  absl::Time expires = now + request.ttl;
  bool caller_id = !request.message_id.empty();
  std::string id = caller_id ? std::move(request.message_id) : NewMessageId();
  int64_t now_ms = absl::ToUnixMillis(now);
  int64_t expires_ms = absl::ToUnixMillis(expires);
  std::vector<std::string> argv{"EVALSHA",
                                AppendSha(),
                                "0",
                                request.user_id,
                                *request.payload,
                                id,
                                caller_id ? "1" : "0",
                                std::to_string(absl::ToInt64Milliseconds(request.ttl)),
                                std::to_string(options_.history_size),
                                std::to_string(now_ms),
                                std::to_string(expires_ms)};
  connection_->Command(
      std::move(argv), [payload = std::move(request.payload), id = std::move(id), now, expires,
                        done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
        if (!v.ok()) return done(v.status());
        const auto& e = v->elements;
        if (v->type != redis::Value::Type::kArray || e.size() < 3) {
          return done(Malformed("append"));
        }
        AppendResult result;
        uint64_t seq = static_cast<uint64_t>(e[1].AsInt());
        if (e[0].AsInt() == 1) {
          if (e.size() < 5) return done(Malformed("append"));
          result.duplicate = true;
          result.message = MakeMessage(seq, std::move(id), absl::FromUnixMillis(e[2].AsInt()),
                                       absl::FromUnixMillis(e[4].AsInt()),
                                       std::make_shared<const std::string>(e[3].str));
        } else {
          result.message = MakeMessage(seq, std::move(id), now, expires, std::move(payload));
          result.delivered = static_cast<uint32_t>(e[2].AsInt());
        }
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
  std::vector<std::string> argv{"EVALSHA",
                                ReadSha(),
                                "0",
                                request.user_id,
                                request.after ? std::to_string(*request.after) : "",
                                std::to_string(std::max<size_t>(1, request.max_messages)),
                                std::to_string(request.max_bytes),
                                std::to_string(absl::ToUnixMillis(clock_->Now()))};
  connection_->Command(
      std::move(argv), [done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
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
  connection_->Command({"EVALSHA", CursorSha(), "0", std::string(user_id), std::to_string(seq)},
                       [](absl::StatusOr<redis::Value>) {});
}

void RedisStore::Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) {
  connection_->Command({"EVALSHA", PurgeSha(), "0", std::string(user_id)},
                       [done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
                         done(v.ok() ? absl::OkStatus() : v.status());
                       });
}

}  // namespace push::store
