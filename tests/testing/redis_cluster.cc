#include "tests/testing/redis_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/ports.h"

namespace push::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The cluster bus of a node listens on its port + 10000 (the default cluster-port).
constexpr int kBusOffset = 10000;
constexpr milliseconds kPoll(100);

std::string FindExecutable(const std::string& name) {
  const char* path = getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Starts `exe` with `args` (argv[0] included), stdin from /dev/null, stdout and stderr into
// `output`. The child closes every other descriptor it inherited, so a server started by a
// test never holds one of the test's sockets open after the test closed it, and dies with
// the thread that started it.
pid_t Spawn(const std::string& exe, const std::vector<std::string>& args,
            const std::string& output) {
  // Everything the child needs is prepared here: after fork() in a threaded process the child
  // may only make plain system calls.
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int out = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (in < 0 || out < 0) {
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(out, STDERR_FILENO);
    if (close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 4096; ++fd) close(fd);
    }
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  close(in);
  close(out);
  return pid;
}

// Waits for `pid` to exit, at most `timeout`; true once it is reaped.
bool Reap(pid_t pid, milliseconds timeout, int* status = nullptr) {
  auto deadline = Clock::now() + timeout;
  int ignored;
  if (status == nullptr) status = &ignored;
  while (true) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

void KillAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  // SIGKILL cannot be caught or blocked (nor is a stopped process immune): the bound only
  // guards against a process stuck in the kernel.
  if (!Reap(pid, std::chrono::seconds(10))) ADD_FAILURE() << "pid " << pid << " did not exit";
}

// Runs a command to completion within `timeout`; its exit code, or -1 if it had to be killed.
int RunBounded(const std::string& exe, const std::vector<std::string>& args,
               const std::string& output, milliseconds timeout) {
  pid_t pid = Spawn(exe, args, output);
  if (pid < 0) return -1;
  int status = 0;
  if (!Reap(pid, timeout, &status)) {
    KillAndReap(pid);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadTail(const std::string& path, size_t max_chars = 2000) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > max_chars) text = "..." + text.substr(text.size() - max_chars);
  return text;
}

redis::Value ErrorValue(std::string text) {
  redis::Value v;
  v.type = redis::Value::Type::kError;
  v.str = std::move(text);
  return v;
}

bool IsOk(const redis::Value& v) { return v.type == redis::Value::Type::kStatus && v.str == "OK"; }

std::string Describe(const redis::Value& v) {
  if (v.type == redis::Value::Type::kArray) return "(array)";
  if (v.type == redis::Value::Type::kInteger) return std::to_string(v.integer);
  if (v.is_nil()) return "(nil)";
  return v.str;
}

}  // namespace

bool RedisCluster::Available() {
  return !FindExecutable("redis-server").empty() && !FindExecutable("redis-cli").empty();
}

RedisCluster::RedisCluster() : RedisCluster(Options{}) {}

RedisCluster::RedisCluster(Options options) : options_(options) {
  if (!Available()) {
    ADD_FAILURE() << "redis-server or redis-cli is not installed";
    return;
  }
  auto began = Clock::now();
  ready_ = Start();
  start_time_ = std::chrono::duration_cast<milliseconds>(Clock::now() - began);
  if (!ready_) {
    std::string logs;
    for (const Node& n : nodes_) {
      if (n.dir.empty()) continue;
      logs += "\n--- node on port " + std::to_string(n.port) + (n.pid > 0 ? "" : " (exited)") +
              ": " + ReadTail(n.dir + "/redis.log", 800);
    }
    ADD_FAILURE() << "the Redis Cluster did not start: " << last_error_ << logs;
    KillAll();
  }
}

RedisCluster::~RedisCluster() { KillAll(); }

void RedisCluster::KillAll() {
  for (Node& n : nodes_) {
    if (n.pid > 0) kill(n.pid, SIGKILL);
  }
  for (Node& n : nodes_) {
    if (n.pid > 0) KillAndReap(n.pid);
    n.pid = -1;
  }
}

bool RedisCluster::Fail(std::string why) {
  last_error_ = std::move(why);
  return false;
}

bool RedisCluster::Start() {
  const int total = options_.primaries * (1 + options_.replicas_per_primary);
  if (options_.primaries < 3) {
    // redis-cli --cluster create refuses fewer than three primaries.
    return Fail("a Redis Cluster needs at least 3 primaries");
  }
  auto deadline = Clock::now() + options_.start_timeout;
  nodes_.resize(total);
  for (int i = 0; i < total; ++i) {
    if (!LaunchNode(&nodes_[i], i)) return false;
  }
  if (!CreateCluster()) return false;
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return WaitAgreed(std::max(left, milliseconds(1000)), /*all_replicas=*/true);
}

bool RedisCluster::LaunchNode(Node* node, int index) {
  static const std::string exe = FindExecutable("redis-server");
  std::random_device seed;
  std::mt19937 rng(seed());
  node->dir = dir_.path() + "/node" + std::to_string(index);
  mkdir(node->dir.c_str(), 0755);
  std::set<int> taken;
  for (const Node& n : nodes_) {
    if (n.port > 0 && &n != node) {
      taken.insert(n.port);
      taken.insert(n.port + kBusOffset);
    }
  }
  // The port and its bus port are leased against the other test processes; a process outside
  // the tests may still take one before redis-server binds it (it then exits at once, or another
  // server answers there): pick again a few times.
  for (int attempt = 0; attempt < 5; ++attempt) {
    node->port = LeasedLoopbackPort(rng, &leases_, kBusOffset, taken);
    if (node->port == 0) return Fail("no free port pair (P, P+10000) on 127.0.0.1");
    taken.insert(node->port);
    taken.insert(node->port + kBusOffset);
    unlink((node->dir + "/nodes.conf").c_str());
    std::string port = std::to_string(node->port);
    // No persistence (the cluster is thrown away with the test); a short node timeout so
    // failovers take seconds; a replica's first sync starts at once instead of after the
    // default 5 s wait for more replicas; replicas pinged every second so their replication
    // offset is non-zero soon after the sync, which is when CLUSTER SLOTS starts listing them.
    const std::pair<std::string, std::string> config[] = {
        {"port", port},
        {"bind", "127.0.0.1"},
        {"dir", node->dir},
        {"cluster-enabled", "yes"},
        {"cluster-config-file", node->dir + "/nodes.conf"},
        {"cluster-node-timeout", std::to_string(options_.node_timeout_ms)},
        {"appendonly", "no"},
        {"save", ""},
        {"repl-diskless-sync-delay", "0"},
        {"repl-ping-replica-period", "1"},
        {"daemonize", "no"},
        {"loglevel", "notice"},
        {"logfile", node->dir + "/redis.log"},
    };
    std::vector<std::string> args = {"redis-server"};
    for (const auto& [name, value] : config) {
      args.push_back("--" + name);
      args.push_back(value);
    }
    if (!options_.password.empty()) {
      args.insert(args.end(),
                  {"--requirepass", options_.password, "--masterauth", options_.password});
    }
    node->pid = Spawn(exe, args, node->dir + "/stdout.log");
    if (node->pid <= 0) return Fail("cannot start redis-server");
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      if (waitpid(node->pid, nullptr, WNOHANG) == node->pid) {
        node->pid = -1;  // exited: most likely the port or the bus port was taken meanwhile
        break;
      }
      redis::Value pong = Command(node->port, {"PING"});
      if (pong.type == redis::Value::Type::kStatus && pong.str == "PONG") {
        // Ours, not a server someone else started on the port in the meantime.
        redis::Value info = Command(node->port, {"INFO", "server"});
        if (info.str.find("process_id:" + std::to_string(node->pid) + "\r") != std::string::npos) {
          return true;
        }
        break;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    if (node->pid > 0) KillAndReap(node->pid);
    node->pid = -1;
  }
  return Fail("redis-server node " + std::to_string(index) +
              " did not start: " + ReadTail(node->dir + "/redis.log", 800));
}

bool RedisCluster::CreateCluster() {
  static const std::string exe = FindExecutable("redis-cli");
  std::vector<std::string> args = {"redis-cli", "--cluster", "create"};
  for (const Node& n : nodes_) args.push_back("127.0.0.1:" + std::to_string(n.port));
  args.insert(args.end(), {"--cluster-replicas", std::to_string(options_.replicas_per_primary),
                           "--cluster-yes"});
  if (!options_.password.empty())
    args.insert(args.end(), {"-a", options_.password, "--no-auth-warning"});
  // It waits for the nodes to join by itself (about 2 s here), but without a bound.
  std::string output = dir_.path() + "/create.log";
  int code = RunBounded(exe, args, output, options_.start_timeout);
  if (code != 0) {
    return Fail("redis-cli --cluster create " +
                (code < 0 ? std::string("timed out") : "exited with " + std::to_string(code)) +
                ": " + ReadTail(output));
  }
  return true;
}

std::string RedisCluster::seeds() const {
  std::string out;
  for (const Node& n : nodes_) {
    if (!out.empty()) out += ",";
    out += "127.0.0.1:" + std::to_string(n.port);
  }
  return out;
}

std::vector<int> RedisCluster::ports() const {
  std::vector<int> out;
  for (const Node& n : nodes_) out.push_back(n.port);
  return out;
}

RedisCluster::Node* RedisCluster::Find(int port) {
  for (Node& n : nodes_) {
    if (n.port == port) return &n;
  }
  return nullptr;
}

bool RedisCluster::running(int port) const {
  for (const Node& n : nodes_) {
    if (n.port == port) return n.pid > 0;
  }
  return false;
}

redis::Value RedisCluster::Command(int port, const std::vector<std::string>& argv) {
  redis::Endpoint endpoint{"127.0.0.1", port};
  endpoint.password = options_.password;
  absl::StatusOr<redis::Value> v =
      redis::BlockingCommand(endpoint, argv, absl::Seconds(1), absl::Seconds(5));
  if (!v.ok()) return ErrorValue(absl::StrCat("ERR ", v.status().message()));
  return *std::move(v);
}

std::string RedisCluster::ClusterInfoField(int port, const std::string& field) {
  redis::Value info = Command(port, {"CLUSTER", "INFO"});
  if (info.type != redis::Value::Type::kString) return "";
  std::stringstream lines(info.str);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 &&
        line[field.size()] == ':') {
      return line.substr(field.size() + 1);
    }
  }
  return "";
}

absl::StatusOr<redis::SlotMap> RedisCluster::SlotMapOf(int port) {
  return redis::ParseClusterSlots(Command(port, {"CLUSTER", "SLOTS"}), "127.0.0.1");
}

RedisCluster::Role RedisCluster::RoleOf(int port) {
  if (!running(port)) return Role::kDown;
  redis::Value role = Command(port, {"ROLE"});
  if (role.type != redis::Value::Type::kArray || role.elements.empty()) return Role::kDown;
  if (role.elements[0].str == "master") return Role::kPrimary;
  if (role.elements[0].str == "slave") return Role::kReplica;
  return Role::kDown;
}

std::vector<int> RedisCluster::NodesWithRole(Role role) {
  std::vector<int> out;
  for (const Node& n : nodes_) {
    if (n.pid > 0 && RoleOf(n.port) == role) out.push_back(n.port);
  }
  return out;
}

int RedisCluster::PrimaryOf(uint16_t slot) {
  for (const Node& n : nodes_) {
    if (n.pid <= 0) continue;
    absl::StatusOr<redis::SlotMap> map = SlotMapOf(n.port);
    if (!map.ok()) continue;
    const redis::Shard* shard = map->ShardForSlot(slot);
    return shard ? shard->primary.port : 0;
  }
  return 0;
}

void RedisCluster::Kill(int port) {
  Node* n = Find(port);
  if (n == nullptr || n->pid <= 0) return;
  KillAndReap(n->pid);
  n->pid = -1;
}

int RedisCluster::KillPrimaryOf(uint16_t slot) {
  int port = PrimaryOf(slot);
  if (port != 0) Kill(port);
  return port;
}

bool RedisCluster::Agreed(bool all_replicas, std::vector<int>* owners) {
  std::vector<int> reference;
  int reference_port = 0;
  for (const Node& n : nodes_) {
    if (n.pid <= 0) continue;
    std::string at = "node " + std::to_string(n.port);
    std::string state = ClusterInfoField(n.port, "cluster_state");
    if (state != "ok") return Fail(at + " says cluster_state:" + state);
    absl::StatusOr<redis::SlotMap> map = SlotMapOf(n.port);
    if (!map.ok()) return Fail(at + ": " + std::string(map.status().message()));
    if (map->assigned_slots() != redis::kClusterSlots) {
      return Fail(at + " has " + std::to_string(map->assigned_slots()) + " slots assigned");
    }
    if (all_replicas && static_cast<int>(map->shards().size()) != options_.primaries) {
      return Fail(at + " lists " + std::to_string(map->shards().size()) + " shards");
    }
    for (const redis::Shard& shard : map->shards()) {
      if (!running(shard.primary.port)) {
        return Fail(at + " still has slots on the killed node " +
                    std::to_string(shard.primary.port));
      }
      if (all_replicas &&
          static_cast<int>(shard.replicas.size()) != options_.replicas_per_primary) {
        return Fail(at + " lists " + std::to_string(shard.replicas.size()) + " replicas of " +
                    std::to_string(shard.primary.port));
      }
    }
    std::vector<int> own(redis::kClusterSlots);
    for (int slot = 0; slot < redis::kClusterSlots; ++slot) {
      own[slot] = map->ShardForSlot(static_cast<uint16_t>(slot))->primary.port;
    }
    if (reference_port == 0) {
      reference = std::move(own);
      reference_port = n.port;
      continue;
    }
    auto [mine, theirs] = std::mismatch(own.begin(), own.end(), reference.begin());
    if (mine != own.end()) {
      return Fail(at + " and node " + std::to_string(reference_port) + " disagree on slot " +
                  std::to_string(mine - own.begin()) + " (" + std::to_string(*mine) + " vs " +
                  std::to_string(*theirs) + ")");
    }
  }
  if (reference_port == 0) return Fail("no node is running");
  if (owners != nullptr) *owners = std::move(reference);
  return true;
}

bool RedisCluster::WaitAgreed(milliseconds timeout, bool all_replicas) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (Agreed(all_replicas, nullptr)) return true;
    if (Clock::now() >= deadline) {
      return Fail("not agreed after " + std::to_string(timeout.count()) + " ms: " + last_error_);
    }
    std::this_thread::sleep_for(kPoll);
  }
}

int RedisCluster::WaitForFailover(uint16_t slot, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    std::vector<int> owners;
    // Agreed() refuses a map that still names a killed primary, so this holds only once a
    // replica took over and every running node knows it.
    if (Agreed(false, &owners) && RoleOf(owners[slot]) == Role::kPrimary) return owners[slot];
    if (Clock::now() >= deadline) {
      Fail("no failover after " + std::to_string(timeout.count()) + " ms: " + last_error_);
      return 0;
    }
    std::this_thread::sleep_for(kPoll);
  }
}

std::optional<RedisCluster::Migration> RedisCluster::PrepareMigration(uint16_t slot, int to_port) {
  Migration m;
  m.from_port = PrimaryOf(slot);
  if (m.from_port == 0) {
    Fail("no primary serves slot " + std::to_string(slot));
    return std::nullopt;
  }
  if (m.from_port == to_port) {
    Fail("slot " + std::to_string(slot) + " is already on " + std::to_string(to_port));
    return std::nullopt;
  }
  if (RoleOf(to_port) != Role::kPrimary) {
    Fail("node " + std::to_string(to_port) + " is not a running primary");
    return std::nullopt;
  }
  redis::Value from_id = Command(m.from_port, {"CLUSTER", "MYID"});
  redis::Value to_id = Command(to_port, {"CLUSTER", "MYID"});
  if (from_id.type != redis::Value::Type::kString || to_id.type != redis::Value::Type::kString) {
    Fail("CLUSTER MYID: " + Describe(from_id) + " / " + Describe(to_id));
    return std::nullopt;
  }
  m.from_id = from_id.str;
  m.to_id = to_id.str;
  return m;
}

bool RedisCluster::BeginSlotMigration(uint16_t slot, int to_port) {
  std::optional<Migration> m = PrepareMigration(slot, to_port);
  if (!m) return false;
  std::string s = std::to_string(slot);
  // The target first: once the source says MIGRATING it sends ASK there, and the target must
  // already accept the slot's commands that come with ASKING.
  redis::Value importing = Command(to_port, {"CLUSTER", "SETSLOT", s, "IMPORTING", m->from_id});
  if (!IsOk(importing)) return Fail("SETSLOT IMPORTING: " + Describe(importing));
  redis::Value migrating = Command(m->from_port, {"CLUSTER", "SETSLOT", s, "MIGRATING", m->to_id});
  if (!IsOk(migrating)) return Fail("SETSLOT MIGRATING: " + Describe(migrating));
  return true;
}

bool RedisCluster::FinishSlotMigration(uint16_t slot, int to_port) {
  std::optional<Migration> m = PrepareMigration(slot, to_port);
  if (!m) return false;
  std::string s = std::to_string(slot);
  // In batches of 100 keys; while the source is MIGRATING it creates no new key in the slot
  // (those go to the target by ASK), so the batches end. The bound is for a runaway writer.
  for (int batch = 0;; ++batch) {
    if (batch == 100000) return Fail("slot " + s + " never emptied");
    redis::Value keys = Command(m->from_port, {"CLUSTER", "GETKEYSINSLOT", s, "100"});
    if (keys.type != redis::Value::Type::kArray) {
      return Fail("CLUSTER GETKEYSINSLOT: " + Describe(keys));
    }
    if (keys.elements.empty()) break;
    std::vector<std::string> migrate = {"MIGRATE", "127.0.0.1", std::to_string(to_port), "", "0",
                                        "5000",    "KEYS"};
    for (const redis::Value& k : keys.elements) migrate.push_back(k.str);
    redis::Value moved = Command(m->from_port, migrate);
    if (moved.type == redis::Value::Type::kError) return Fail("MIGRATE: " + moved.str);
  }
  // The target first, so its config epoch is bumped before the source lets the slot go (the
  // order the specification gives); then every other primary, rather than waiting for gossip.
  std::vector<int> order = {to_port, m->from_port};
  for (const Node& n : nodes_) {
    if (n.pid > 0 && n.port != to_port && n.port != m->from_port &&
        RoleOf(n.port) == Role::kPrimary) {
      order.push_back(n.port);
    }
  }
  for (int port : order) {
    redis::Value assigned = Command(port, {"CLUSTER", "SETSLOT", s, "NODE", m->to_id});
    if (!IsOk(assigned)) {
      return Fail("SETSLOT NODE on " + std::to_string(port) + ": " + Describe(assigned));
    }
  }
  auto deadline = Clock::now() + std::chrono::seconds(15);
  while (true) {
    std::vector<int> owners;
    if (Agreed(false, &owners) && owners[slot] == to_port) return true;
    if (Clock::now() >= deadline) {
      return Fail("nodes do not agree that slot " + s + " moved: " + last_error_);
    }
    std::this_thread::sleep_for(kPoll);
  }
}

bool RedisCluster::MigrateSlot(uint16_t slot, int to_port) {
  return BeginSlotMigration(slot, to_port) && FinishSlotMigration(slot, to_port);
}

}  // namespace push::testing
