// The Redis Cluster command client (common/redis/cluster_client.h) against a real 3+3 Redis
// Cluster on loopback (tests/testing/redis_cluster.h): routing by slot over every shard, scripts
// loaded on every shard, a slot migration (ASK while it moves, MOVED after), the failover of a
// killed primary, CommandAll, and Stop() with commands in flight. Every wait is bounded.

#include "common/redis/cluster_client.h"

#include <dirent.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/redis/cluster_slots.h"
#include "common/redis/redis_url.h"
#include "gtest/gtest.h"
#include "tests/testing/ports.h"
#include "tests/testing/redis_cluster.h"
#include "tests/testing/redis_server.h"

namespace push::testing {
namespace {

using redis::ClusterClient;
using redis::ClusterOptions;
using redis::KeySlot;
using redis::Value;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// Longer than any command may take: a callback that has not run by then is a hang.
constexpr seconds kHang(15);

using Result = absl::StatusOr<Value>;

// One command, waited for.
Result RunSlot(ClusterClient& client, uint16_t slot, std::vector<std::string> argv) {
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  client.Command(slot, std::move(argv), [promise](Result r) { promise->set_value(std::move(r)); });
  if (future.wait_for(kHang) != std::future_status::ready) {
    return absl::DeadlineExceededError("the callback did not run (a hang)");
  }
  return future.get();
}

Result RunKey(ClusterClient& client, const std::string& key, std::vector<std::string> argv) {
  return RunSlot(client, KeySlot(key), std::move(argv));
}

// Many commands sent at once (so they are pipelined), then waited for; results in order.
std::vector<Result> RunAll(ClusterClient& client,
                           std::vector<std::pair<uint16_t, std::vector<std::string>>> commands) {
  std::vector<std::shared_ptr<std::promise<Result>>> promises;
  std::vector<std::future<Result>> futures;
  for (auto& [slot, argv] : commands) {
    auto promise = std::make_shared<std::promise<Result>>();
    futures.push_back(promise->get_future());
    client.Command(slot, std::move(argv),
                   [promise](Result r) { promise->set_value(std::move(r)); });
  }
  std::vector<Result> results;
  auto deadline = Clock::now() + kHang;
  for (auto& f : futures) {
    if (f.wait_until(deadline) != std::future_status::ready) {
      results.push_back(absl::DeadlineExceededError("the callback did not run (a hang)"));
    } else {
      results.push_back(f.get());
    }
  }
  return results;
}

std::vector<Result> RunAllShards(ClusterClient& client, std::vector<std::string> argv) {
  auto promise = std::make_shared<std::promise<std::vector<Result>>>();
  std::future<std::vector<Result>> future = promise->get_future();
  client.CommandAll(std::move(argv),
                    [promise](std::vector<Result> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(kHang) != std::future_status::ready) {
    ADD_FAILURE() << "CommandAll's callback did not run";
    return {};
  }
  return future.get();
}

std::string Describe(const Result& r) {
  if (!r.ok()) return r.status().ToString();
  switch (r->type) {
    case Value::Type::kNil:
      return "(nil)";
    case Value::Type::kInteger:
      return std::to_string(r->integer);
    case Value::Type::kArray:
      return "(array of " + std::to_string(r->elements.size()) + ")";
    default:
      return r->str;
  }
}

bool WaitUntil(const std::function<bool()>& condition, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

// Test threads looping until stopped; stopped and joined on every way out of a test, a failed
// ASSERT included (a joinable std::thread would abort the binary).
class Background {
 public:
  ~Background() { Stop(); }
  void Add(std::function<void(const std::atomic<bool>& stop)> loop) {
    threads_.emplace_back([this, loop = std::move(loop)] { loop(stop_); });
  }
  void Stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// What the hooks saw.
struct Events {
  std::atomic<int> map_changed{0};
  std::atomic<int> went_up{0};
  std::atomic<int> went_down{0};
};

ClusterOptions OptionsFor(const RedisCluster& cluster, Events* events) {
  ClusterOptions options;
  absl::StatusOr<std::vector<redis::Endpoint>> seeds = redis::ParseSeeds(cluster.seeds());
  EXPECT_TRUE(seeds.ok()) << seeds.status();
  if (seeds.ok()) options.seeds = *seeds;
  options.name = "test";
  if (events != nullptr) {
    options.on_map_changed = [events] { events->map_changed.fetch_add(1); };
    options.on_up_changed = [events](bool up) {
      (up ? events->went_up : events->went_down).fetch_add(1);
    };
  }
  return options;
}

// The first of prefix0, prefix1, ... whose slot `map` gives to the primary on `port`.
std::string KeyOnPrimary(const redis::SlotMap& map, const std::string& prefix, int port) {
  for (int i = 0; i < 100000; ++i) {
    std::string key = prefix + std::to_string(i);
    const redis::Shard* shard = map.ShardForSlot(KeySlot(key));
    if (shard != nullptr && shard->primary.port == port) return key;
  }
  ADD_FAILURE() << "no key " << prefix << "N on " << port;
  return prefix;
}

int ThreadCount() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(d);
  }
  return n;
}

using ClusterClientTest = RedisClusterSuite;

TEST_F(ClusterClientTest, RoutesKeysToEveryShard) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  Events events;
  ClusterClient client(OptionsFor(cluster, &events));
  ASSERT_TRUE(client.Start().ok());
  EXPECT_TRUE(WaitUntil([&] { return client.up(); }, seconds(5)));
  ASSERT_EQ(client.slot_map().shards().size(), 3u);

  // 100 plain keys and 100 hash-tagged ones, as pushd's per-user keys are.
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back("key:" + std::to_string(i));
  for (int i = 0; i < 100; ++i) keys.push_back("{user:" + std::to_string(i) + "}:stream");
  std::set<int> shards;
  redis::SlotMap map = client.slot_map();
  for (const std::string& key : keys) shards.insert(map.ShardIndex(KeySlot(key)));
  EXPECT_EQ(shards, (std::set<int>{0, 1, 2}));

  std::vector<std::pair<uint16_t, std::vector<std::string>>> sets, gets;
  for (const std::string& key : keys) {
    sets.push_back({KeySlot(key), {"SET", key, "value of " + key}});
    gets.push_back({KeySlot(key), {"GET", key}});
  }
  std::vector<Result> set_results = RunAll(client, std::move(sets));
  std::vector<Result> get_results = RunAll(client, std::move(gets));
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(set_results[i].ok()) << keys[i] << ": " << set_results[i].status();
    EXPECT_EQ(set_results[i]->str, "OK") << keys[i];
    ASSERT_TRUE(get_results[i].ok()) << keys[i] << ": " << get_results[i].status();
    EXPECT_EQ(get_results[i]->str, "value of " + keys[i]);
  }
  // Each key is on the primary that owns its slot (asked directly, not through the client).
  for (const std::string& key : keys) {
    EXPECT_EQ(cluster.Command(cluster.PrimaryOf(KeySlot(key)), {"GET", key}).str,
              "value of " + key);
  }
  // An error reply that is not a redirection is the caller's, as with redis::Connection.
  Result wrong = RunKey(client, keys[0], {"LPUSH", keys[0], "x"});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInternal) << Describe(wrong);
  EXPECT_NE(wrong.status().message().find("WRONGTYPE"), std::string::npos) << Describe(wrong);
  EXPECT_EQ(events.map_changed.load(), 0);
  client.Stop();
}

TEST_F(ClusterClientTest, LoadsScriptsOnEveryShard) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  const std::string script = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
  const std::string sha = redis::Connection::ScriptSha(script);
  ClusterOptions options = OptionsFor(cluster, nullptr);
  options.scripts = {script};
  ClusterClient client(std::move(options));
  ASSERT_TRUE(client.Start().ok());

  // The script is in every primary's cache, loaded by the client's connections.
  std::vector<Result> exists = RunAllShards(client, {"SCRIPT", "EXISTS", sha});
  ASSERT_EQ(exists.size(), 3u);
  for (const Result& r : exists) {
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->elements.size(), 1u);
    EXPECT_EQ(r->elements[0].integer, 1);
  }
  for (int port : cluster.NodesWithRole(RedisCluster::Role::kPrimary)) {
    std::string key = KeyOnPrimary(client.slot_map(), "script:", port);
    Result first = RunKey(client, key, {"EVALSHA", sha, "1", key, "5"});
    Result second = RunKey(client, key, {"EVALSHA", sha, "1", key, "5"});
    ASSERT_TRUE(first.ok()) << key << " on " << port << ": " << first.status();
    ASSERT_TRUE(second.ok()) << key << " on " << port << ": " << second.status();
    EXPECT_EQ(first->integer, 5);
    EXPECT_EQ(second->integer, 10);
    EXPECT_EQ(cluster.Command(port, {"GET", key}).str, "10");
  }
  client.Stop();
}

TEST_F(ClusterClientTest, CommandAllAnswersOncePerShardInShardOrder) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  ClusterClient client(OptionsFor(cluster, nullptr));
  ASSERT_TRUE(client.Start().ok());
  redis::SlotMap map = client.slot_map();
  ASSERT_EQ(map.shards().size(), 3u);

  std::vector<Result> ports = RunAllShards(client, {"CONFIG", "GET", "port"});
  ASSERT_EQ(ports.size(), 3u);
  for (size_t i = 0; i < ports.size(); ++i) {
    ASSERT_TRUE(ports[i].ok()) << ports[i].status();
    ASSERT_EQ(ports[i]->elements.size(), 2u);
    EXPECT_EQ(ports[i]->elements[1].str, std::to_string(map.shards()[i].primary.port))
        << "shard " << i;
  }
  // A cluster-wide total: 30 new keys show up in the sum of the shards' DBSIZE.
  auto total = [&] {
    int64_t sum = 0;
    for (const Result& r : RunAllShards(client, {"DBSIZE"})) {
      EXPECT_TRUE(r.ok()) << r.status();
      if (r.ok()) sum += r->integer;
    }
    return sum;
  };
  int64_t before = total();
  for (int i = 0; i < 30; ++i) {
    std::string key = "all:" + std::to_string(i);
    ASSERT_TRUE(RunKey(client, key, {"SET", key, "1"}).ok());
  }
  EXPECT_EQ(total(), before + 30);
  client.Stop();

  // No map, no shards: an empty answer rather than a wait.
  ClusterClient never_started(OptionsFor(cluster, nullptr));
  EXPECT_TRUE(RunAllShards(never_started, {"DBSIZE"}).empty());
}

TEST_F(ClusterClientTest, FollowsASlotMigrationWithAskThenMoved) {
  auto cluster = std::make_unique<RedisCluster>();
  ASSERT_TRUE(cluster->ready()) << cluster->last_error();
  const std::string kept = "{mig}:kept";    // stays on the source until the slot is finished
  const std::string early = "{mig}:early";  // moved to the target while the slot migrates
  const std::string added = "{mig}:added";  // created while the slot migrates
  const std::string counter = "{mig}:counter";
  const uint16_t slot = KeySlot(kept);
  const int from = cluster->PrimaryOf(slot);
  ASSERT_NE(from, 0);
  int to = 0;
  for (int port : cluster->NodesWithRole(RedisCluster::Role::kPrimary)) {
    if (port != from && to == 0) to = port;
  }
  ASSERT_NE(to, 0);
  Events events;
  ClusterClient client(OptionsFor(*cluster, &events));
  ASSERT_TRUE(client.Start().ok());

  // Before.
  ASSERT_EQ(Describe(RunKey(client, kept, {"SET", kept, "k1"})), "OK");
  ASSERT_EQ(Describe(RunKey(client, early, {"SET", early, "e1"})), "OK");
  // A writer that keeps incrementing a key of the slot through the whole move.
  std::atomic<int64_t> increments{0};
  std::mutex failures_mu;
  std::vector<std::string> failures;
  Background writer;
  writer.Add([&](const std::atomic<bool>& stop) {
    while (!stop.load()) {
      Result r = RunKey(client, counter, {"INCR", counter});
      if (r.ok() && r->type == Value::Type::kInteger) {
        increments.fetch_add(1);
      } else {
        std::lock_guard<std::mutex> lock(failures_mu);
        failures.push_back(Describe(r));
      }
      std::this_thread::sleep_for(milliseconds(2));
    }
  });

  // During: the source answers for the keys it still has and sends ASK for the others.
  ASSERT_TRUE(cluster->BeginSlotMigration(slot, to)) << cluster->last_error();
  redis::Value migrated = cluster->Command(
      from, {"MIGRATE", "127.0.0.1", std::to_string(to), "", "0", "5000", "KEYS", early});
  ASSERT_EQ(migrated.str, "OK") << migrated.str;
  int changes_before = events.map_changed.load();
  EXPECT_EQ(Describe(RunKey(client, kept, {"GET", kept})), "k1");          // not moved yet
  EXPECT_EQ(Describe(RunKey(client, early, {"GET", early})), "e1");        // ASK to the target
  EXPECT_EQ(Describe(RunKey(client, added, {"SET", added, "a1"})), "OK");  // created there
  EXPECT_EQ(Describe(RunKey(client, added, {"GET", added})), "a1");
  // ASK is for one command: the map still sends the slot to the source.
  EXPECT_EQ(events.map_changed.load(), changes_before);
  EXPECT_EQ(client.slot_map().ShardForSlot(slot)->primary.port, from);

  // After: the source answers MOVED; the client refreshes its map and goes to the target.
  ASSERT_TRUE(cluster->FinishSlotMigration(slot, to)) << cluster->last_error();
  EXPECT_EQ(Describe(RunKey(client, kept, {"GET", kept})), "k1");
  EXPECT_TRUE(WaitUntil([&] { return events.map_changed.load() > changes_before; }, seconds(5)))
      << "on_map_changed did not fire";
  EXPECT_EQ(client.slot_map().ShardForSlot(slot)->primary.port, to);
  EXPECT_EQ(Describe(RunKey(client, early, {"GET", early})), "e1");
  EXPECT_EQ(Describe(RunKey(client, added, {"GET", added})), "a1");
  // Everything of the slot is on the target now.
  for (const std::string& key : {kept, early, added}) {
    EXPECT_NE(cluster->Command(to, {"EXISTS", key}).integer, 0) << key;
  }
  std::this_thread::sleep_for(milliseconds(200));  // a few more increments on the target
  writer.Stop();
  EXPECT_TRUE(failures.empty()) << failures.size()
                                << " INCRs failed, the first: " << failures.front();
  EXPECT_GT(increments.load(), 0);
  EXPECT_EQ(Describe(RunKey(client, counter, {"GET", counter})), std::to_string(increments.load()));
  std::cout << increments.load() << " increments through the migration, map changed "
            << events.map_changed.load() << " times" << std::endl;
  client.Stop();
}

TEST_F(ClusterClientTest, FindsTheNewPrimaryAfterAFailover) {
  auto cluster = std::make_unique<RedisCluster>();
  ASSERT_TRUE(cluster->ready()) << cluster->last_error();
  constexpr milliseconds kNodeTimeout(2000);  // RedisCluster's default
  constexpr milliseconds kTimeout(4000);      // well past the ~1 s CLUSTERDOWN window
  const std::string victim = "{fo}:victim";
  const uint16_t victim_slot = KeySlot(victim);
  const int victim_port = cluster->PrimaryOf(victim_slot);
  ASSERT_NE(victim_port, 0);
  std::vector<std::string> others;
  for (int port : cluster->NodesWithRole(RedisCluster::Role::kPrimary)) {
    if (port != victim_port) {
      others.push_back(KeyOnPrimary(*cluster->SlotMapOf(port), "other:", port));
    }
  }
  ASSERT_EQ(others.size(), 2u);
  Events events;
  ClusterOptions options = OptionsFor(*cluster, &events);
  // The killed primary is the only seed: the new primary must be found through the nodes the
  // map named (the other primaries, the replicas).
  options.seeds = {redis::Endpoint{"127.0.0.1", victim_port}};
  options.command_timeout = absl::FromChrono(kTimeout);
  ClusterClient client(std::move(options));
  ASSERT_TRUE(client.Start().ok());
  ASSERT_EQ(Describe(RunKey(client, victim, {"SET", victim, "0"})), "OK");

  struct Outcome {
    Clock::time_point start;
    milliseconds took;
    absl::StatusCode code;
    std::string text;
  };
  std::mutex mu;
  std::vector<std::vector<Outcome>> outcomes(3);  // victim, others[0], others[1]
  const std::vector<std::string> keys = {victim, others[0], others[1]};
  Background loops;
  for (size_t k = 0; k < keys.size(); ++k) {
    loops.Add([&, k](const std::atomic<bool>& stop) {
      for (int i = 0; !stop.load(); ++i) {
        auto start = Clock::now();
        Result r = RunKey(client, keys[k], {"SET", keys[k], std::to_string(i)});
        auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
        {
          std::lock_guard<std::mutex> lock(mu);
          outcomes[k].push_back({start, took, r.status().code(), Describe(r)});
        }
        std::this_thread::sleep_for(milliseconds(20));
      }
    });
  }

  // A command in flight when the primary dies (held there by CLIENT PAUSE) must not be resent
  // to the new primary: it fails UNAVAILABLE and its INCR never happens.
  const std::string paused_key = "{fo}:paused";
  ASSERT_EQ(Describe(RunKey(client, paused_key, {"SET", paused_key, "100"})), "OK");
  ASSERT_EQ(cluster->Command(victim_port, {"WAIT", "1", "2000"}).integer, 1);
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_EQ(cluster->Command(victim_port, {"CLIENT", "PAUSE", "10000", "WRITE"}).str, "OK");
  auto in_flight = std::make_shared<std::promise<Result>>();
  std::future<Result> in_flight_result = in_flight->get_future();
  client.Command(KeySlot(paused_key), {"INCR", paused_key},
                 [in_flight](Result r) { in_flight->set_value(std::move(r)); });
  std::this_thread::sleep_for(milliseconds(200));

  auto killed_at = Clock::now();
  ASSERT_EQ(cluster->KillPrimaryOf(victim_slot), victim_port);
  int new_primary = cluster->WaitForFailover(victim_slot, seconds(30));
  auto failed_over_at = Clock::now();
  ASSERT_NE(new_primary, 0) << cluster->last_error();
  std::cout << "failover took "
            << std::chrono::duration_cast<milliseconds>(failed_over_at - killed_at).count() << " ms"
            << std::endl;

  // The victim's shard serves again, without a restart of the client, within node timeout +
  // 5 s of the failover.
  auto served_again = [&] {
    std::lock_guard<std::mutex> lock(mu);
    for (const Outcome& o : outcomes[0]) {
      if (o.start >= failed_over_at && o.code == absl::StatusCode::kOk) return true;
    }
    return false;
  };
  EXPECT_TRUE(WaitUntil(served_again, kNodeTimeout + seconds(5)))
      << "no command to the failed-over slot succeeded after the failover";
  auto recovered_at = Clock::now();
  std::this_thread::sleep_for(milliseconds(300));
  loops.Stop();
  std::cout << "served again "
            << std::chrono::duration_cast<milliseconds>(recovered_at - failed_over_at).count()
            << " ms after WaitForFailover returned" << std::endl;

  ASSERT_EQ(in_flight_result.wait_for(kHang), std::future_status::ready);
  Result lost = in_flight_result.get();
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable) << Describe(lost);
  EXPECT_NE(lost.status().message().find("in flight"), std::string::npos) << Describe(lost);
  EXPECT_EQ(cluster->Command(new_primary, {"GET", paused_key}).str, "100")
      << "the INCR in flight at the kill was resent";

  for (size_t k = 0; k < keys.size(); ++k) {
    int ok = 0, unavailable = 0;
    for (const Outcome& o : outcomes[k]) {
      // Never a hang past the timeout: a command sent just before its deadline may wait for
      // its reply, which on loopback takes no time.
      EXPECT_LE(o.took, kTimeout + milliseconds(1500)) << keys[k] << ": " << o.text;
      if (o.code == absl::StatusCode::kOk) {
        ++ok;
      } else {
        ++unavailable;
        EXPECT_EQ(o.code, absl::StatusCode::kUnavailable) << keys[k] << ": " << o.text;
        // Other shards retry through the short CLUSTERDOWN window of the failover.
        EXPECT_EQ(k, 0u) << keys[k] << " failed: " << o.text;
      }
    }
    std::cout << keys[k] << ": " << ok << " ok, " << unavailable << " failed" << std::endl;
    EXPECT_GT(ok, 0) << keys[k];
  }
  EXPECT_EQ(client.slot_map().ShardForSlot(victim_slot)->primary.port, new_primary);
  EXPECT_GE(events.map_changed.load(), 1);
  EXPECT_GE(events.went_down.load(), 1);
  // Up at the start, down at the kill, up again (the hook runs just after up() changes).
  EXPECT_TRUE(
      WaitUntil([&] { return events.went_up.load() == events.went_down.load() + 1; }, seconds(5)))
      << events.went_up.load() << " ups, " << events.went_down.load() << " downs";
  EXPECT_TRUE(client.up());
  client.Stop();
}

TEST_F(ClusterClientTest, StopCompletesEveryCommandInFlight) {
  RedisCluster& cluster = Shared();
  ASSERT_TRUE(cluster.ready()) << cluster.last_error();
  int threads_before = ThreadCount();
  auto client = std::make_unique<ClusterClient>(OptionsFor(cluster, nullptr));
  ASSERT_TRUE(client->Start().ok());
  EXPECT_GT(ThreadCount(), threads_before);

  // One primary holds its clients' commands, so the commands sent to it are in flight.
  const std::string held = "{stop}:held";
  const int paused_port = cluster.PrimaryOf(KeySlot(held));
  ASSERT_EQ(cluster.Command(paused_port, {"CLIENT", "PAUSE", "2000"}).str, "OK");
  constexpr int kCommands = 300;
  std::atomic<int> completed{0};
  std::atomic<int> failed{0};
  for (int i = 0; i < kCommands; ++i) {
    std::string key = i % 3 == 0 ? held : "stop:" + std::to_string(i);
    client->Command(KeySlot(key), {"INCR", key}, [&](Result r) {
      if (!r.ok()) failed.fetch_add(1);
      completed.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(milliseconds(100));
  auto start = Clock::now();
  client->Stop();
  auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  EXPECT_EQ(completed.load(), kCommands) << "Stop() returned before every callback ran";
  EXPECT_GE(failed.load(), kCommands / 3) << "the held commands should have failed";
  EXPECT_LT(took, milliseconds(1500)) << "Stop() waited for the paused primary";
  std::cout << "Stop() took " << took.count() << " ms; " << failed.load() << " of " << kCommands
            << " commands failed" << std::endl;

  // Idempotent; and a stopped client refuses at once.
  client->Stop();
  Result after = RunSlot(*client, 0, {"PING"});
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << Describe(after);
  client.reset();
  EXPECT_EQ(ThreadCount(), threads_before) << "threads left behind";
}

TEST_F(ClusterClientTest, StartSaysWhyNoMapWasFound) {
  // Nothing listens: UNAVAILABLE, and commands fail after their timeout naming the slot.
  ClusterOptions options;
  options.seeds = {redis::Endpoint{"127.0.0.1", FreeLoopbackPort()}};
  options.name = "nowhere";
  options.command_timeout = absl::Milliseconds(300);
  ClusterClient nowhere(std::move(options));
  absl::Status started = nowhere.Start();
  EXPECT_EQ(started.code(), absl::StatusCode::kUnavailable) << started;
  auto start = Clock::now();
  Result r = RunSlot(nowhere, 1234, {"GET", "x"});
  EXPECT_LT(Clock::now() - start, seconds(2));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << Describe(r);
  EXPECT_NE(r.status().message().find("slot 1234"), std::string::npos) << Describe(r);
  EXPECT_FALSE(nowhere.up());
  nowhere.Stop();

  // A plain Redis behind --redis_cluster: no retry will help, so Start() says so.
  ASSERT_TRUE(RedisServer::Available());
  RedisServer plain;
  ASSERT_TRUE(plain.running());
  ClusterOptions plain_options;
  plain_options.seeds = {redis::Endpoint{"127.0.0.1", plain.port()}};
  ClusterClient not_a_cluster(std::move(plain_options));
  absl::Status refused = not_a_cluster.Start();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_NE(refused.message().find("cluster support disabled"), std::string::npos) << refused;

  // A slot past the last one is the caller's mistake.
  ClusterClient idle(ClusterOptions{});
  EXPECT_EQ(RunSlot(idle, redis::kClusterSlots, {"PING"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace push::testing
