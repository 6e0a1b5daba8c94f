#include "common/redis/redis_directory.h"

#include <algorithm>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/base/strings.h"
#include "common/delivery/message.h"
#include "common/redis/redis_schema.h"
#include "spdlog/spdlog.h"

namespace push {
namespace {

constexpr int kHeartbeatTicks = 5;          // ticks are 1 s: heartbeat every 5 s
constexpr char kAliveTtlMs[] = "15000";     // gone from ListClients within 15 s of a crash
constexpr char kRegistryTtlMs[] = "60000";  // ic:<instance> outlives a few missed heartbeats
constexpr size_t kFieldsPerCommand = 256;

// ARGV: user ('' = everyone). Returns {instance, "user\nconn", info, ...} of live instances,
// forgetting dead ones on the way.
constexpr char kListScript[] = R"lua(
local alive = {}
for _, inst in ipairs(redis.call('SMEMBERS', key_nodes())) do
  if redis.call('EXISTS', key_a(inst)) == 1 then
    alive[inst] = true
  else
    redis.call('SREM', key_nodes(), inst)
    redis.call('DEL', key_ic(inst))
  end
end
local out = {}
if ARGV[1] == '' then
  for inst, _ in pairs(alive) do
    local all = redis.call('HGETALL', key_ic(inst))
    for k = 1, #all, 2 do
      out[#out + 1] = inst; out[#out + 1] = all[k]; out[#out + 1] = all[k + 1]
    end
  end
else
  local ck = key_c(ARGV[1])
  for _, f in ipairs(redis.call('HKEYS', ck)) do
    local inst, conn = string.match(f, '^([^\n]*)\n(.*)$')
    if inst and alive[inst] then
      local key = ARGV[1]..'\n'..conn
      local v = redis.call('HGET', key_ic(inst), key)
      if v then out[#out + 1] = inst; out[#out + 1] = key; out[#out + 1] = v end
    else
      redis.call('HDEL', ck, f)
    end
  end
end
return out
)lua";

// ARGV: user, connection ('' = all of the user's), code, reason. Publishes a close command to
// every live instance holding a matching connection; returns how many connections match.
constexpr char kCloseScript[] = R"lua(
local ck = key_c(ARGV[1])
local insts, order, n = {}, {}, 0
for _, f in ipairs(redis.call('HKEYS', ck)) do
  local inst, conn = string.match(f, '^([^\n]*)\n(.*)$')
  if inst and (ARGV[2] == '' or conn == ARGV[2]) then
    if redis.call('EXISTS', key_a(inst)) == 1 then
      if not insts[inst] then insts[inst] = true; order[#order + 1] = inst end
      n = n + 1
    else
      redis.call('HDEL', ck, f)
    end
  end
end
for _, inst in ipairs(order) do
  redis.call('PUBLISH', channel(inst), close_command(ARGV[1], ARGV[2], ARGV[3], ARGV[4]))
end
return n
)lua";

const std::string& ListSha() {
  static const std::string sha = redis::Connection::ScriptSha(redis_schema::Script(kListScript));
  return sha;
}
const std::string& CloseSha() {
  static const std::string sha = redis::Connection::ScriptSha(redis_schema::Script(kCloseScript));
  return sha;
}

void Ignore(absl::StatusOr<redis::Value>) {}

// Node ids go into keys and newline-separated records: keep them to a safe alphabet.
std::string Sanitize(std::string_view s) {
  std::string out;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == ':';
    out.push_back(ok ? c : '_');
  }
  return out;
}

std::string OneLine(std::string_view s) {
  std::string out(s);
  std::replace(out.begin(), out.end(), '\n', ' ');
  return out;
}

}  // namespace

RedisDirectory::RedisDirectory(std::string node_id, std::string instance,
                               redis::Connection* commands, Hub* hub)
    : node_id_(std::move(node_id)),
      instance_(std::move(instance)),
      commands_(commands),
      hub_(hub) {}

std::vector<std::string> RedisDirectory::Scripts() {
  return {redis_schema::Script(kListScript), redis_schema::Script(kCloseScript)};
}

std::string RedisDirectory::MakeInstance(std::string_view node_id) {
  std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat(Sanitize(node_id), "-", absl::Hex(rng(), absl::kZeroPad16));
}

std::string RedisDirectory::Info(const Connection& c) const {
  const ConnectionInfo& info = c.info();
  return absl::StrCat(OneLine(node_id_), "\n", OneLine(info.remote_address), "\n",
                      OneLine(info.user_agent), "\n", absl::ToUnixNanos(info.connected_at), "\n",
                      c.messages_sent(), "\n", c.queued_bytes());
}

// Registration, removal and refreshes of one connection are queued under mu_, so their Redis
// commands go out in the order the hub saw the events: a refresh or re-registration can never
// land after the removal and bring a closed connection back.
void RedisDirectory::OnAdd(const Connection& connection) {
  absl::MutexLock lock(&mu_);
  written_[&connection] = 0;
  Register(connection);
}

void RedisDirectory::Register(const Connection& c) {
  const ConnectionInfo& info = c.info();
  commands_->Command({"HSET", redis_schema::InstanceClientsKey(instance_),
                      redis_schema::ClientField(info.user_id, info.connection_id), Info(c)},
                     Ignore);
  commands_->Command({"HSET", redis_schema::ConnectionsKey(info.user_id),
                      redis_schema::ConnectionField(instance_, info.connection_id), ""},
                     Ignore);
}

void RedisDirectory::OnRemove(const Connection& c) {
  absl::MutexLock lock(&mu_);
  written_.erase(&c);
  const ConnectionInfo& info = c.info();
  commands_->Command({"HDEL", redis_schema::ConnectionsKey(info.user_id),
                      redis_schema::ConnectionField(instance_, info.connection_id)},
                     Ignore);
  commands_->Command({"HDEL", redis_schema::InstanceClientsKey(instance_),
                      redis_schema::ClientField(info.user_id, info.connection_id)},
                     Ignore);
}

void RedisDirectory::Heartbeat() {
  if (gone_.load()) return;
  commands_->Command({"SET", redis_schema::AliveKey(instance_), node_id_, "PX", kAliveTtlMs},
                     Ignore);
  commands_->Command({"SADD", redis_schema::NodesKey(), instance_}, Ignore);
  commands_->Command({"PEXPIRE", redis_schema::InstanceClientsKey(instance_), kRegistryTtlMs},
                     Ignore);
}

void RedisDirectory::OnCommandsConnected() {
  // Redis may have restarted without our keys: announce ourselves and register every local
  // connection again before anything else goes out on this connection.
  Heartbeat();
  size_t registered = 0;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [connection, written] : written_) {
      Register(*connection);
      written = 0;
      ++registered;
    }
  }
  if (registered > 0) spdlog::info("redis: registered {} connections again", registered);
  ResyncAll();
}

void RedisDirectory::OnSubscriberConnected() { ResyncAll(); }

void RedisDirectory::ResyncAll() {
  for (const auto& c : hub_->All()) c->Resync();
}

void RedisDirectory::OnTick() {
  if (++ticks_ % kHeartbeatTicks != 0 || gone_.load()) return;
  Heartbeat();
  RefreshStats();
}

void RedisDirectory::RefreshStats() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> batch;
  for (auto& [c, written] : written_) {
    uint64_t figure = c->messages_sent() + c->queued_bytes();
    if (figure == written) continue;
    written = figure;
    if (batch.empty()) batch = {"HSET", redis_schema::InstanceClientsKey(instance_)};
    batch.push_back(redis_schema::ClientField(c->info().user_id, c->info().connection_id));
    batch.push_back(Info(*c));
    if (batch.size() >= 2 + 2 * kFieldsPerCommand) {
      commands_->Command(std::move(batch), Ignore);
      batch.clear();
    }
  }
  if (!batch.empty()) commands_->Command(std::move(batch), Ignore);
}

void RedisDirectory::OnCloseCommand(const redis_schema::CloseCommand& command) {
  hub_->Close(command.user_id, command.connection_id, command.code, command.reason);
}

void RedisDirectory::List(
    std::optional<std::string> user_id,
    absl::AnyInvocable<void(absl::StatusOr<std::vector<ClientRecord>>)> done) {
  commands_->Command(
      {"EVALSHA", ListSha(), "0", user_id.value_or("")},
      [this, user_id, done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
        if (!v.ok()) return done(v.status());
        // Figures of our own connections come live from the hub rather than the last refresh.
        absl::flat_hash_map<std::string, ClientSnapshot> local;
        for (auto& s :
             hub_->Snapshot(user_id ? std::optional<std::string_view>(*user_id) : std::nullopt)) {
          local[redis_schema::ClientField(s.info.user_id, s.info.connection_id)] = std::move(s);
        }
        std::vector<ClientRecord> out;
        const auto& e = v->elements;
        for (size_t i = 0; i + 2 < e.size(); i += 3) {
          std::vector<absl::string_view> key =
              absl::StrSplit(e[i + 1].str, absl::MaxSplits('\n', 1));
          std::vector<absl::string_view> f = absl::StrSplit(e[i + 2].str, '\n');
          if (key.size() != 2 || f.size() != 6) continue;
          ClientRecord r;
          r.node_id = std::string(f[0]);
          r.client.info.user_id = std::string(key[0]);
          r.client.info.connection_id = std::string(key[1]);
          r.client.info.remote_address = std::string(f[1]);
          r.client.info.user_agent = std::string(f[2]);
          int64_t connected_ns = 0;
          (void)absl::SimpleAtoi(f[3], &connected_ns);
          r.client.info.connected_at = absl::FromUnixNanos(connected_ns);
          (void)absl::SimpleAtoi(f[4], &r.client.messages_sent);
          (void)absl::SimpleAtoi(f[5], &r.client.queued_bytes);
          if (e[i].str == instance_) {
            auto it = local.find(e[i + 1].str);
            if (it == local.end()) continue;  // closed since (its removal is on its way)
            r.client.messages_sent = it->second.messages_sent;
            r.client.queued_bytes = it->second.queued_bytes;
          }
          out.push_back(std::move(r));
        }
        std::sort(out.begin(), out.end(), [](const ClientRecord& a, const ClientRecord& b) {
          return std::tie(a.client.info.user_id, a.client.info.connection_id) <
                 std::tie(b.client.info.user_id, b.client.info.connection_id);
        });
        done(std::move(out));
      });
}

void RedisDirectory::Close(std::string user_id, std::string connection_id, uint16_t code,
                           std::string reason,
                           absl::AnyInvocable<void(absl::StatusOr<uint32_t>)> done) {
  commands_->Command({"EVALSHA", CloseSha(), "0", std::move(user_id), std::move(connection_id),
                      std::to_string(code), std::move(reason)},
                     [done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
                       if (!v.ok()) return done(v.status());
                       done(static_cast<uint32_t>(v->AsInt()));
                     });
}

void RedisDirectory::Goodbye(absl::Duration timeout) {
  gone_.store(true);  // no heartbeat after this brings the instance back
  auto done = std::make_shared<absl::Notification>();
  commands_->Command(
      {"DEL", redis_schema::AliveKey(instance_), redis_schema::InstanceClientsKey(instance_)},
      Ignore);
  commands_->Command({"SREM", redis_schema::NodesKey(), instance_},
                     [done](absl::StatusOr<redis::Value>) { done->Notify(); });
  done->WaitForNotificationWithTimeout(timeout);
}

}  // namespace push
