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

constexpr int kHeartbeatTicks = 5;    // ticks are 1 s: lease renewed every 5 s
constexpr char kLeaseMs[] = "15000";  // gone from ListClients within 15 s of a crash
constexpr size_t kFieldsPerCommand = 256;

// KEYS: leases. ARGV: instance, lease_ms. Renews the instance's lease (Redis's clock); 1 when the
// instance was not there (new, or its entries were removed as dead: it registers them again).
constexpr char kLeaseScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
)lua";

// KEYS: leases. Returns {live instance..., '', instance whose lease ended...}.
constexpr char kInstancesScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live, dead = {}, {}
local all = redis.call('HGETALL', KEYS[1])
for k = 1, #all, 2 do
  if tonumber(all[k + 1]) > now then live[#live + 1] = all[k] else dead[#dead + 1] = all[k] end
end
live[#live + 1] = ''
for _, d in ipairs(dead) do live[#live + 1] = d end
return live
)lua";

// One instance's share of a ListClients page. KEYS: ix, ic. ARGV: min, max (ZRANGEBYLEX bounds),
// limit, count_min, count_max (the filter's whole range, for the total).
// Returns {total, member, info, member, info, ...}.
constexpr char kPageScript[] = R"lua(
local total = redis.call('ZLEXCOUNT', KEYS[1], ARGV[4], ARGV[5])
local out = {total}
local ms = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
if #ms > 0 then
  local infos = redis.call('HMGET', KEYS[2], unpack(ms))
  for k = 1, #ms do out[#out + 1] = ms[k]; out[#out + 1] = infos[k] or '' end
end
return out
)lua";

// KEYS: c of the user. ARGV: user, connection ('' = all of the user's), code, reason, verb, then
// the live instances. Publishes a close command on the user's channel when a live connection
// matches; forgets connections of dead instances; returns how many connections match.
constexpr char kCloseScript[] = R"lua(
local live = {}
for k = 6, #ARGV do live[ARGV[k]] = true end
local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local inst, conn = string.match(f, '^([^\n]*)\n(.*)$')
  if inst and not live[inst] then
    redis.call('HDEL', KEYS[1], f)
  elseif inst and (ARGV[2] == '' or conn == ARGV[2]) then
    n = n + 1
  end
end
if n > 0 then
  redis.call(ARGV[5], user_channel(ARGV[1]), close_command(ARGV[1], ARGV[2], ARGV[3], ARGV[4]))
end
return n
)lua";

const std::string& LeaseSha() {
  static const std::string sha = redis_schema::ScriptSha(kLeaseScript);
  return sha;
}
const std::string& InstancesSha() {
  static const std::string sha = redis_schema::ScriptSha(kInstancesScript);
  return sha;
}
const std::string& PageSha() {
  static const std::string sha = redis_schema::ScriptSha(kPageScript);
  return sha;
}
const std::string& CloseSha() {
  static const std::string sha = redis_schema::ScriptSha(kCloseScript);
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

// The user of a channel pushd:{<user>}:ch.
std::string_view ChannelUser(std::string_view channel) {
  size_t open = channel.find('{');
  size_t close = channel.find('}', open + 1);
  if (open == std::string_view::npos || close == std::string_view::npos) return {};
  return channel.substr(open + 1, close - open - 1);
}

// A record from an instance's index member ("user\nconnection") and info.
bool ParseRecord(std::string_view member, std::string_view info, ClientRecord* r) {
  std::vector<absl::string_view> key = absl::StrSplit(ToAbsl(member), absl::MaxSplits('\n', 1));
  std::vector<absl::string_view> f = absl::StrSplit(ToAbsl(info), '\n');
  if (key.size() != 2) return false;
  r->client.info.user_id = std::string(key[0]);
  r->client.info.connection_id = std::string(key[1]);
  // Six fields, and a seventh (the device) for a connection with one; anything else is a
  // connection registered whose info is not (yet) written: listed bare.
  if (f.size() != 6 && f.size() != 7) return true;
  r->node_id = std::string(f[0]);
  r->client.info.remote_address = std::string(f[1]);
  r->client.info.user_agent = std::string(f[2]);
  int64_t connected_ns = 0;
  (void)absl::SimpleAtoi(f[3], &connected_ns);
  r->client.info.connected_at = absl::FromUnixNanos(connected_ns);
  (void)absl::SimpleAtoi(f[4], &r->client.messages_sent);
  (void)absl::SimpleAtoi(f[5], &r->client.queued_bytes);
  if (f.size() == 7) r->client.info.device_id = std::string(f[6]);
  return true;
}

using InstancesResult =
    absl::StatusOr<std::pair<std::vector<std::string>, std::vector<std::string>>>;

}  // namespace

RedisDirectory::RedisDirectory(std::string node_id, std::string instance, redis::Router* router,
                               redis::Subscriber* subscriber, Hub* hub)
    : node_id_(std::move(node_id)),
      instance_(std::move(instance)),
      router_(router),
      subscriber_(subscriber),
      hub_(hub) {}

std::vector<std::string> RedisDirectory::Scripts() {
  return {redis_schema::Script(kLeaseScript), redis_schema::Script(kInstancesScript),
          redis_schema::Script(kPageScript), redis_schema::Script(kCloseScript)};
}

std::string RedisDirectory::MakeInstance(std::string_view node_id) {
  std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat(Sanitize(node_id), "-", absl::Hex(rng(), absl::kZeroPad16));
}

std::string RedisDirectory::Info(const Connection& c) const {
  const ConnectionInfo& info = c.info();
  // node \n remote \n user agent \n connected ns \n sent \n queued [\n device]: the device only
  // when there is one, so a connection without one reads the same to a pushd that predates them.
  std::string out = absl::StrCat(
      OneLine(node_id_), "\n", OneLine(info.remote_address), "\n", OneLine(info.user_agent), "\n",
      absl::ToUnixNanos(info.connected_at), "\n", c.messages_sent(), "\n", c.queued_bytes());
  if (!info.device_id.empty()) absl::StrAppend(&out, "\n", info.device_id);
  return out;
}

// Registration, removal and refreshes of one connection are queued under mu_, so their Redis
// commands go out in the order the hub saw the events: a refresh or re-registration does not
// land after the removal and bring a closed connection back. What can still outlive its
// connection (a removal refused while Redis was unreachable; on a cluster, a registration
// retried through a failover after its removal) is removed by Tidy.
void RedisDirectory::OnAdd(const Connection& connection) {
  absl::MutexLock lock(&mu_);
  written_[&connection] = 0;
  Register(connection);
  if (subscriber_) subscriber_->Add(redis_schema::UserChannel(connection.info().user_id));
}

void RedisDirectory::Register(const Connection& c) {
  const ConnectionInfo& info = c.info();
  const uint16_t mine = redis_schema::InstanceSlot(instance_);
  std::string member = redis_schema::ClientField(info.user_id, info.connection_id);
  router_->Command(mine, {"HSET", redis_schema::InstanceClientsKey(instance_), member, Info(c)},
                   Ignore);
  router_->Command(mine, {"ZADD", redis_schema::InstanceIndexKey(instance_), "0", member}, Ignore);
  router_->Command(redis_schema::UserSlot(info.user_id),
                   {"HSET", redis_schema::ConnectionsKey(info.user_id),
                    redis_schema::ConnectionField(instance_, info.connection_id), ""},
                   Ignore);
}

void RedisDirectory::OnRemove(const Connection& c, std::string_view) {
  absl::MutexLock lock(&mu_);
  written_.erase(&c);
  const ConnectionInfo& info = c.info();
  const uint16_t mine = redis_schema::InstanceSlot(instance_);
  std::string member = redis_schema::ClientField(info.user_id, info.connection_id);
  router_->Command(redis_schema::UserSlot(info.user_id),
                   {"HDEL", redis_schema::ConnectionsKey(info.user_id),
                    redis_schema::ConnectionField(instance_, info.connection_id)},
                   Ignore);
  router_->Command(mine, {"ZREM", redis_schema::InstanceIndexKey(instance_), member}, Ignore);
  router_->Command(mine, {"HDEL", redis_schema::InstanceClientsKey(instance_), member}, Ignore);
  if (subscriber_) subscriber_->Remove(redis_schema::UserChannel(info.user_id));
}

void RedisDirectory::Heartbeat() {
  if (gone_.load() || subscriber_ == nullptr) return;
  const std::string leases = redis_schema::LeasesKey();
  router_->Command(redis::KeySlot(leases),
                   {"EVALSHA", LeaseSha(), "1", leases, instance_, kLeaseMs},
                   [this](absl::StatusOr<redis::Value> v) {
                     // Our entries were removed while we could not renew the lease (a long
                     // pause, a partition): register every connection again.
                     if (v.ok() && v->AsInt() == 1 && ticks_ > kHeartbeatTicks) {
                       spdlog::warn("redis: this instance's lease had ended; registering again");
                       OnCommandsUp();
                     }
                   });
}

void RedisDirectory::OnCommandsUp() {
  if (subscriber_ == nullptr) return;
  // Redis may have restarted, or a shard failed over, without our keys: announce ourselves and
  // register every local connection again.
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
  Tidy();
  ResyncAll();
}

void RedisDirectory::OnSubscribed(std::string_view channel) {
  std::string_view user = ChannelUser(channel);
  if (user.empty()) return;
  for (const auto& c : hub_->Find(user)) c->Resync();
}

void RedisDirectory::ResyncAll() {
  for (const auto& c : hub_->All()) c->Resync();
}

void RedisDirectory::OnTick() {
  if (++ticks_ % kHeartbeatTicks != 0 || gone_.load() || subscriber_ == nullptr) return;
  Heartbeat();
  RefreshStats();
  if (ticks_ % (6 * kHeartbeatTicks) == 0) Tidy();
  // Every dead instance's entries go, in the background: nodes that died together all stop
  // counting in `delivered` one lease after their death, not one after the other.
  Instances([this](InstancesResult r) {
    if (!r.ok()) return;
    for (const std::string& dead : r->second) CollectGarbage(dead);
  });
}

void RedisDirectory::RefreshStats() {
  absl::MutexLock lock(&mu_);
  const uint16_t mine = redis_schema::InstanceSlot(instance_);
  std::vector<std::string> batch;
  for (auto& [c, written] : written_) {
    uint64_t figure = c->messages_sent() + c->queued_bytes();
    if (figure == written) continue;
    written = figure;
    if (batch.empty()) batch = {"HSET", redis_schema::InstanceClientsKey(instance_)};
    batch.push_back(redis_schema::ClientField(c->info().user_id, c->info().connection_id));
    batch.push_back(Info(*c));
    if (batch.size() >= 2 + 2 * kFieldsPerCommand) {
      router_->Command(mine, std::move(batch), Ignore);
      batch.clear();
    }
  }
  if (!batch.empty()) router_->Command(mine, std::move(batch), Ignore);
}

void RedisDirectory::Instances(absl::AnyInvocable<void(InstancesResult)> done) {
  const std::string leases = redis_schema::LeasesKey();
  router_->Command(redis::KeySlot(leases), {"EVALSHA", InstancesSha(), "1", leases},
                   [done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
                     if (!v.ok()) return done(v.status());
                     std::pair<std::vector<std::string>, std::vector<std::string>> out;
                     bool dead = false;
                     for (auto& e : v->elements) {
                       if (e.str.empty()) {
                         dead = true;
                       } else {
                         (dead ? out.second : out.first).push_back(std::move(e.str));
                       }
                     }
                     done(std::move(out));
                   });
}

// A dead instance's entries: its connections in each user's count, its index and info, its
// lease. Claimed first, so two live nodes do not do it twice at once; the claim goes with the
// entries, and one whose holder died mid-way lapses after 30 s (the removal is idempotent).
void RedisDirectory::CollectGarbage(const std::string& dead) {
  router_->Command(redis_schema::InstanceSlot(dead),
                   {"SET", redis_schema::InstanceGcKey(dead), instance_, "NX", "PX", "30000"},
                   [this, dead](absl::StatusOr<redis::Value> claimed) {
                     if (claimed.ok() && !claimed->is_nil()) RemoveDeadEntries(dead);
                   });
}

void RedisDirectory::RemoveDeadEntries(const std::string& dead) {
  const uint16_t slot = redis_schema::InstanceSlot(dead);
  router_->Command(slot, {"HKEYS", redis_schema::InstanceClientsKey(dead)},
                   [this, dead, slot](absl::StatusOr<redis::Value> fields) {
                     if (!fields.ok()) return;
                     std::vector<std::string> members;
                     for (redis::Value& f : fields->elements) members.push_back(std::move(f.str));
                     RemoveMembers(dead, std::move(members), [this, dead, slot](bool ok) {
                       if (!ok) {
                         // Tried again at a later heartbeat; the instance stays known until then.
                         router_->Command(slot, {"DEL", redis_schema::InstanceGcKey(dead)}, Ignore);
                         return;
                       }
                       spdlog::info("redis: removed the connections of dead instance {}", dead);
                       router_->Command(slot,
                                        {"DEL", redis_schema::InstanceClientsKey(dead),
                                         redis_schema::InstanceIndexKey(dead),
                                         redis_schema::InstanceGcKey(dead)},
                                        Ignore);
                       const std::string leases = redis_schema::LeasesKey();
                       router_->Command(redis::KeySlot(leases), {"HDEL", leases, dead}, Ignore);
                     });
                   });
}

// Removes `members` ("user\nconnection") of `instance` from their users' connection hashes (one
// HDEL per user) and from the instance's index and info; `done(true)` when every command
// succeeded.
void RedisDirectory::RemoveMembers(const std::string& instance, std::vector<std::string> members,
                                   absl::AnyInvocable<void(bool)> done) {
  absl::flat_hash_map<std::string, std::vector<std::string>> by_user;
  for (const std::string& m : members) {
    std::vector<absl::string_view> key = absl::StrSplit(m, absl::MaxSplits('\n', 1));
    if (key.size() != 2) continue;
    by_user[std::string(key[0])].push_back(redis_schema::ConnectionField(instance, ToStd(key[1])));
  }
  struct Count {
    std::atomic<size_t> left;
    std::atomic<bool> ok{true};
    absl::AnyInvocable<void(bool)> done;
  };
  auto count = std::make_shared<Count>();
  count->left.store(by_user.size() + 2);
  count->done = std::move(done);
  auto one = [count](absl::StatusOr<redis::Value> v) {
    if (!v.ok()) count->ok.store(false);
    if (count->left.fetch_sub(1) == 1) count->done(count->ok.load());
  };
  const uint16_t slot = redis_schema::InstanceSlot(instance);
  std::vector<std::string> zrem{"ZREM", redis_schema::InstanceIndexKey(instance)};
  std::vector<std::string> hdel{"HDEL", redis_schema::InstanceClientsKey(instance)};
  for (std::string& m : members) {
    zrem.push_back(m);
    hdel.push_back(std::move(m));
  }
  for (auto& [user, fields] : by_user) {
    std::vector<std::string> argv{"HDEL", redis_schema::ConnectionsKey(user)};
    for (std::string& f : fields) argv.push_back(std::move(f));
    router_->Command(redis_schema::UserSlot(user), std::move(argv), one);
  }
  if (zrem.size() > 2) {
    router_->Command(slot, std::move(zrem), one);
    router_->Command(slot, std::move(hdel), one);
  } else {
    one(redis::Value{});
    one(redis::Value{});
  }
}

// This instance's own entries of connections that are gone: a removal refused while Redis was
// unreachable, or (on a cluster) a registration retried after its removal. Run after every
// reconnect and every 30 s.
void RedisDirectory::Tidy() {
  if (gone_.load() || subscriber_ == nullptr) return;
  router_->Command(
      redis_schema::InstanceSlot(instance_), {"HKEYS", redis_schema::InstanceClientsKey(instance_)},
      [this](absl::StatusOr<redis::Value> fields) {
        if (!fields.ok()) return;
        std::vector<std::string> gone;
        for (redis::Value& f : fields->elements) {
          std::vector<absl::string_view> key = absl::StrSplit(f.str, absl::MaxSplits('\n', 1));
          if (key.size() == 2 && hub_->Find(ToStd(key[0]), ToStd(key[1])).empty()) {
            gone.push_back(std::move(f.str));
          }
        }
        if (gone.empty()) return;
        spdlog::info("redis: removing {} entries of connections closed earlier", gone.size());
        RemoveMembers(instance_, std::move(gone), [](bool) {});
      });
}

void RedisDirectory::OnCloseCommand(const redis_schema::CloseCommand& command) {
  hub_->Close(command.user_id, command.connection_id, command.code, command.reason);
}

void RedisDirectory::List(ListRequest request,
                          absl::AnyInvocable<void(absl::StatusOr<ClientPage>)> done) {
  Instances([this, request = std::move(request),
             done = std::move(done)](InstancesResult instances) mutable {
    if (!instances.ok()) return done(instances.status());
    // Bounds in each instance's index: the filter's range, and the page's part of it.
    std::string count_min = "-", count_max = "+";
    if (request.user_id) {
      count_min = absl::StrCat("[", *request.user_id, "\n");
      count_max = absl::StrCat("[", *request.user_id, "\n\xff");
    }
    std::string min = count_min;
    if (request.after) {
      std::string after = redis_schema::ClientField(request.after->first, request.after->second);
      // A token from before the filter's range starts at the range (never at other users').
      if (!request.user_id || after >= count_min.substr(1)) min = absl::StrCat("(", after);
    }
    struct Entry {
      ClientRecord record;
      bool stale = false;  // ours, and closed since (its removal is on its way or was lost)
    };
    struct Gather {
      ListRequest request;
      std::vector<Entry> entries;
      uint64_t total = 0;
      absl::Status error;
      size_t left = 0;
      absl::Mutex mu;
      absl::AnyInvocable<void(absl::StatusOr<ClientPage>)> done;
    };
    auto gather = std::make_shared<Gather>();
    gather->request = std::move(request);
    gather->done = std::move(done);
    const std::vector<std::string>& live = instances->first;
    gather->left = live.size();
    auto finish = [](Gather& g) {
      if (!g.error.ok()) return g.done(g.error);
      auto key = [](const Entry& e) {
        return std::tie(e.record.client.info.user_id, e.record.client.info.connection_id);
      };
      std::sort(g.entries.begin(), g.entries.end(),
                [&](const Entry& a, const Entry& b) { return key(a) < key(b); });
      // The page is the first `limit` entries of the merged indexes; stale ones are left out
      // of what is shown, not of where the next page starts.
      ClientPage page;
      page.total = g.total;
      page.more = g.entries.size() > g.request.limit;
      if (page.more) {
        g.entries.resize(g.request.limit);
        const ConnectionInfo& last = g.entries.back().record.client.info;
        page.resume_after.emplace(last.user_id, last.connection_id);
      }
      for (Entry& e : g.entries) {
        if (e.stale) {
          if (page.total > 0) --page.total;
        } else {
          page.clients.push_back(std::move(e.record));
        }
      }
      g.done(std::move(page));
    };
    if (live.empty()) return finish(*gather);
    for (const std::string& inst : live) {
      const bool mine = inst == instance_;
      router_->Command(
          redis_schema::InstanceSlot(inst),
          {"EVALSHA", PageSha(), "2", redis_schema::InstanceIndexKey(inst),
           redis_schema::InstanceClientsKey(inst), min, count_max,
           std::to_string(gather->request.limit + 1), count_min, count_max},
          [this, gather, mine, finish](absl::StatusOr<redis::Value> v) mutable {
            std::vector<Entry> entries;
            uint64_t total = 0;
            absl::Status error;
            if (!v.ok()) {
              error = v.status();
            } else if (v->type != redis::Value::Type::kArray || v->elements.empty()) {
              error = absl::InternalError("unexpected Redis answer to a ListClients page");
            } else {
              const auto& e = v->elements;
              total = static_cast<uint64_t>(e[0].AsInt());
              for (size_t i = 1; i + 1 < e.size(); i += 2) {
                Entry entry;
                ClientRecord& r = entry.record;
                if (!ParseRecord(e[i].str, e[i + 1].str, &r)) continue;
                if (mine) {
                  // Our own connections' figures come live from the hub.
                  auto found = hub_->Find(r.client.info.user_id, r.client.info.connection_id);
                  if (found.empty()) {
                    entry.stale = true;
                  } else {
                    r.client.messages_sent = found.front()->messages_sent();
                    r.client.queued_bytes = found.front()->queued_bytes();
                    if (r.node_id.empty()) r.node_id = node_id_;
                  }
                }
                entries.push_back(std::move(entry));
              }
            }
            bool last;
            {
              absl::MutexLock lock(&gather->mu);
              if (!error.ok()) gather->error = error;
              gather->total += total;
              for (auto& entry : entries) gather->entries.push_back(std::move(entry));
              last = --gather->left == 0;
            }
            if (last) finish(*gather);
          });
    }
  });
}

void RedisDirectory::Close(std::string user_id, std::string connection_id, uint16_t code,
                           std::string reason,
                           absl::AnyInvocable<void(absl::StatusOr<uint32_t>)> done) {
  Instances([this, user_id = std::move(user_id), connection_id = std::move(connection_id), code,
             reason = std::move(reason), done = std::move(done)](InstancesResult r) mutable {
    if (!r.ok()) return done(r.status());
    std::vector<std::string> argv{"EVALSHA",
                                  CloseSha(),
                                  "1",
                                  redis_schema::ConnectionsKey(user_id),
                                  user_id,
                                  std::move(connection_id),
                                  std::to_string(code),
                                  std::move(reason),
                                  router_->cluster() ? "SPUBLISH" : "PUBLISH"};
    for (std::string& inst : r->first) argv.push_back(std::move(inst));
    router_->Command(redis_schema::UserSlot(user_id), std::move(argv),
                     [done = std::move(done)](absl::StatusOr<redis::Value> v) mutable {
                       if (!v.ok()) return done(v.status());
                       done(static_cast<uint32_t>(v->AsInt()));
                     });
  });
}

void RedisDirectory::Goodbye(absl::Duration timeout) {
  gone_.store(true);  // no heartbeat after this brings the instance back
  auto done = std::make_shared<absl::Notification>();
  router_->Command(redis_schema::InstanceSlot(instance_),
                   {"DEL", redis_schema::InstanceClientsKey(instance_),
                    redis_schema::InstanceIndexKey(instance_)},
                   Ignore);
  const std::string leases = redis_schema::LeasesKey();
  router_->Command(redis::KeySlot(leases), {"HDEL", leases, instance_},
                   [done](absl::StatusOr<redis::Value>) { done->Notify(); });
  done->WaitForNotificationWithTimeout(timeout);
}

}  // namespace push
