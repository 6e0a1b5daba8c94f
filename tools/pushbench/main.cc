// pushbench: load generator and meter for any server speaking the push contract.
//
// Opens N WebSocket connections to /ws, pushes stamped JSON payloads over gRPC (Push, PushStream
// or Broadcast), and reports connect rate, delivered messages/s, end-to-end latency percentiles,
// lost/duplicated messages (must be 0), and the server's RSS and CPU time from /proc. Prints a
// human table and, as its last line, one JSON object. Exit status: 0 = ran clean, 1 = loss,
// duplication or errors, 2 = bad usage.
//
//   pushbench --scenario=throughput --mode=broadcast --pushd=build/services/pushd
//   pushbench --scenario=latency --grpc=127.0.0.1:50051 --ws=127.0.0.1:8080 --server_pid=1234
//
// Scenarios (sizes are the published ones; every one can be shrunk by flags):
//   idle        15,000 connections held 60 s with the server's heartbeats, then one push each
//   throughput  1,000 users x 1 connection, 256-byte payloads to random users, max rate, 10 s
//   latency     10,000 connections, 5,000 pushes/s to random users for 30 s
//   multitab    2,000 users x 5 connections, pushes to random users, max rate, 10 s
//   replay      10,000 messages to 1,000 offline users, then all connect: time to deliver all
//   churn       connection churn: 1,000 connects/s, each a new connection of one of 5,000 users
//               (a fixed-seed sequence) that reads its welcome and closes; 10 s of warm-up,
//               then 20 s measured: server CPU per connect+disconnect cycle. With
//               --presence_watchers=N, N WatchPresence streams read every presence event.

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "tools/pushbench/churn.h"
#include "tools/pushbench/pusher.h"
#include "tools/pushbench/report.h"
#include "tools/pushbench/server.h"
#include "tools/pushbench/stats.h"
#include "tools/pushbench/ws_fleet.h"

ABSL_FLAG(std::string, scenario, "throughput",
          "idle, throughput, latency, multitab, replay, flood or churn");
ABSL_FLAG(std::string, pushd, "", "start this pushd binary (loopback, ports 0) and measure it");
ABSL_FLAG(std::string, pushd_args, "", "extra flags for the started pushd, space-separated");
ABSL_FLAG(std::string, grpc, "", "gRPC address of an already-running server (host:port)");
ABSL_FLAG(std::string, ws, "", "WebSocket address of an already-running server (host:port)");
ABSL_FLAG(int, server_pid, 0, "pid of the already-running server, for RSS/CPU from /proc");
ABSL_FLAG(std::string, watch_pids, "",
          "comma-separated pids of other processes (e.g. redis-server) whose CPU time (utime + "
          "stime from /proc) is read with the server's, over the same measured phase");
ABSL_FLAG(int, connections, -1, "WebSocket connections (default: the scenario's)");
ABSL_FLAG(bool, device_ids, false,
          "each connection names a device of its own (device_id=d<n>): per-device cursors");
ABSL_FLAG(int, tabs, -1, "connections per user (default: 5 for multitab, else 1)");
ABSL_FLAG(std::string, mode, "unary", "how to push: unary (Push), stream (PushStream), broadcast");
ABSL_FLAG(int, concurrency, -1,
          "unary: Push calls in flight (64); stream: streams (2); broadcast: calls in flight (4)");
ABSL_FLAG(int, window, 128, "stream: unanswered requests per stream");
ABSL_FLAG(int, batch, 100, "broadcast: users per Broadcast call");
ABSL_FLAG(double, rate, -1, "requests per second; 0 = max (default: 5000 for latency, else 0)");
ABSL_FLAG(double, duration, -1, "seconds of pushing (default: 30 for latency, else 10)");
ABSL_FLAG(double, hold, 60, "idle: seconds to hold the connections");
ABSL_FLAG(int, messages, 10000, "replay: messages pushed while the users are offline");
ABSL_FLAG(int, flood_messages, 24, "flood: messages pushed to each user (round robin)");
ABSL_FLAG(int, payload_bytes, 256, "size of each pushed JSON payload");
ABSL_FLAG(int, max_backlog, 2000,
          "max rate: pause pushing while this many deliveries are outstanding (0 = never)");
ABSL_FLAG(int, io_threads, 2, "WebSocket client threads");
ABSL_FLAG(int, source_ips, 0, "source addresses 127.0.0.1..N (0 = one per 5,000 connections)");
ABSL_FLAG(int, connect_concurrency, 256, "WebSocket handshakes in flight");
ABSL_FLAG(int, channels, 1, "gRPC channels (TCP connections)");
ABSL_FLAG(double, drain_seconds, 20, "how long to wait for deliveries after the last push");
ABSL_FLAG(std::string, slow_log, "",
          "write every message slower than --slow_ms to this file (seconds since the first "
          "push, latency ms, connection), to see whether a tail comes in bursts");
ABSL_FLAG(double, slow_ms, 5, "threshold for --slow_log");
ABSL_FLAG(int, presence_watchers, 0,
          "churn: WatchPresence streams (every user, each on its own channel) reading every "
          "presence event during the run");
ABSL_FLAG(int, churn_users, 5000, "churn: distinct users the cycles pick from");
ABSL_FLAG(int, churn_workers, 64, "churn: cycles in flight at most");
ABSL_FLAG(uint64_t, churn_seed, 1, "churn: seed of the users' sequence");
ABSL_FLAG(double, warmup, 10,
          "churn: seconds of cycles before the measured window (at least the server's "
          "--presence_offline_delay, so OFFLINEs are in steady state)");
ABSL_FLAG(double, churn_settle, 20,
          "churn: after the cycles stop, how long to wait for the watchers to have every event "
          "(the last OFFLINEs come --presence_offline_delay later)");
ABSL_FLAG(int, runs, 1,
          "repeat the scenario this often (fresh pushd each time) and report medians");
ABSL_FLAG(double, max_seconds, 175, "hard limit per run; exceeded = error, exit 3");

namespace pushbench {
namespace {

std::vector<std::string> SplitArgs(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

std::vector<pid_t> WatchPids() {
  std::vector<pid_t> pids;
  std::string s = absl::GetFlag(FLAGS_watch_pids);
  for (char& c : s) {
    if (c == ',') c = ' ';
  }
  for (const std::string& p : SplitArgs(s))
    pids.push_back(static_cast<pid_t>(std::atoi(p.c_str())));
  return pids;
}

std::vector<ProcStats> ReadWatched(const std::vector<pid_t>& pids) {
  std::vector<ProcStats> out;
  for (pid_t p : pids) out.push_back(ReadProcStats(p));
  return out;
}

bool SplitHostPort(const std::string& addr, std::string* host, int* port) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return false;
  *host = addr.substr(0, colon);
  *port = std::atoi(addr.c_str() + colon + 1);
  return !host->empty() && *port > 0 && *port < 65536;
}

bool IsLoopback(const std::string& host) {
  return host.rfind("127.", 0) == 0 || host == "localhost" || host == "::1" || host == "[::1]";
}

void RaiseOpenFilesLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

uint64_t OpenFilesLimit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

// Run-unique user names, so streams on a long-lived server start empty.
std::vector<std::string> MakeUsers(size_t n) {
  char prefix[48];
  std::snprintf(prefix, sizeof(prefix), "pb%x%llx-", static_cast<unsigned>(getpid()),
                static_cast<unsigned long long>(NowNanos() & 0xffffffffff));
  std::vector<std::string> names;
  names.reserve(n);
  for (size_t i = 0; i < n; ++i) names.push_back(prefix + std::to_string(i));
  return names;
}

void Sleep(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

// Waits until `fleet` has `expected` distinct messages or `timeout_s` passes with no progress;
// returns the time the last one arrived.
Clock::time_point WaitForDeliveries(const WsFleet& fleet, uint64_t expected, double timeout_s) {
  uint64_t seen = fleet.Unique();
  auto last_progress = Clock::now();
  while (seen < expected) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    uint64_t now_seen = fleet.Unique();
    auto now = Clock::now();
    if (now_seen != seen) {
      seen = now_seen;
      last_progress = now;
    } else if (SecondsBetween(last_progress, now) > timeout_s) {
      break;
    }
  }
  return last_progress;
}

uint64_t ExpectedDeliveries(const UserTable& users, uint64_t tabs) {
  uint64_t sum = 0;
  for (size_t u = 0; u < users.size(); ++u) sum += users.pushed[u].load() * tabs;
  return sum;
}

uint64_t SeqAnomalies(const UserTable& users) {
  uint64_t bad = 0;
  for (size_t u = 0; u < users.size(); ++u) bad += users.pushed[u] != users.max_seq[u];
  return bad;
}

// ---- Scenarios -------------------------------------------------------------------------------

struct Sizes {
  int connections;
  int tabs;
  double duration;
  double rate;
};

Sizes ScenarioSizes(const std::string& scenario) {
  Sizes s{1000, 1, 10, 0};
  if (scenario == "idle") s = {15000, 1, 0, 0};
  if (scenario == "latency") s = {10000, 1, 30, 5000};
  if (scenario == "multitab") s = {10000, 5, 10, 0};
  if (scenario == "replay") s = {1000, 1, 0, 0};
  if (scenario == "flood") s = {3000, 1, 0, 0};
  if (scenario == "churn") s = {absl::GetFlag(FLAGS_churn_workers), 1, 20, 1000};
  if (absl::GetFlag(FLAGS_connections) > 0) s.connections = absl::GetFlag(FLAGS_connections);
  if (absl::GetFlag(FLAGS_tabs) > 0) s.tabs = absl::GetFlag(FLAGS_tabs);
  if (absl::GetFlag(FLAGS_duration) >= 0) s.duration = absl::GetFlag(FLAGS_duration);
  if (absl::GetFlag(FLAGS_rate) >= 0) s.rate = absl::GetFlag(FLAGS_rate);
  return s;
}

PushOptions BasePushOptions(const std::string& mode, int tabs) {
  PushOptions o;
  o.mode = mode == "stream"      ? PushMode::kStream
           : mode == "broadcast" ? PushMode::kBroadcast
                                 : PushMode::kUnary;
  int c = absl::GetFlag(FLAGS_concurrency);
  o.concurrency = c > 0 ? c : o.mode == PushMode::kUnary ? 64 : o.mode == PushMode::kStream ? 2 : 4;
  o.stream_window = absl::GetFlag(FLAGS_window);
  o.broadcast_batch = absl::GetFlag(FLAGS_batch);
  o.payload_bytes = absl::GetFlag(FLAGS_payload_bytes);
  o.max_backlog = static_cast<uint64_t>(std::max(0, absl::GetFlag(FLAGS_max_backlog)));
  o.connections_per_user = tabs;
  return o;
}

std::vector<uint64_t> Scrape(const Target& target) {
  std::vector<std::string> series(std::begin(ChurnReport::kSeries), std::end(ChurnReport::kSeries));
  return ScrapeMetrics(target.ws_host, target.ws_port, series);
}

// Connection churn: cycles of connect, welcome, close at a fixed rate, with N presence watchers.
// The window is a slice of steady state: it starts after the warm-up (OFFLINEs of the warm-up's
// cycles fall due in it, as the window's own will after it) and ends while cycles go on. Then
// the cycles stop and the watchers are checked against the server's count of presence events.
void RunChurn(const Sizes& sizes, const Target& target, Report* out) {
  Report& report = *out;
  ChurnReport& c = report.churn;
  c.on = true;
  c.watchers = std::max(0, absl::GetFlag(FLAGS_presence_watchers));
  c.users = absl::GetFlag(FLAGS_churn_users);
  c.workers = absl::GetFlag(FLAGS_churn_workers);
  c.rate = sizes.rate;
  c.warmup_seconds = std::max(0.0, absl::GetFlag(FLAGS_warmup));
  report.rate = sizes.rate;
  report.connections = 0;
  report.latency_meaningful = false;
  auto error = [&report](const std::string& what) { report.errors.push_back(what); };

  std::unique_ptr<PresenceWatchers> watchers;
  if (c.watchers > 0) {
    watchers = std::make_unique<PresenceWatchers>(target.grpc, c.watchers);
    std::string why;
    if (!watchers->WaitLive(15, &why)) return error(why + " (" + target.grpc + ")");
  }
  ChurnOptions o;
  o.host = target.ws_host;
  o.port = target.ws_port;
  o.io_threads = absl::GetFlag(FLAGS_io_threads);
  int ips = absl::GetFlag(FLAGS_source_ips);
  o.source_ips = ips > 0 ? ips : 8;
  o.workers = c.workers;
  o.rate = sizes.rate;
  o.users = c.users;
  o.seed = absl::GetFlag(FLAGS_churn_seed);
  // Run-unique names: a long-lived server (or Redis) has not seen these users.
  o.user_prefix = MakeUsers(1)[0] + "-";
  ChurnClients clients(o);
  const double self_cpu0 = SelfCpuSeconds();
  report.rss_before = ReadProcStats(target.pid);
  c.metrics_base = Scrape(target);
  clients.Start();
  Sleep(c.warmup_seconds);

  // The window. /metrics is read just outside it (its own cost is not a cycle's).
  c.metrics_start = Scrape(target);
  report.cpu_start = ReadProcStats(target.pid);
  report.watched_start = ReadWatched(report.watched_pids);
  c.start = clients.Counts();
  if (watchers) c.watch_start = watchers->Counts();
  auto t0 = Clock::now();
  Sleep(sizes.duration);
  report.cpu_end = ReadProcStats(target.pid);
  report.watched_end = ReadWatched(report.watched_pids);
  c.end = clients.Counts();
  if (watchers) c.watch_end = watchers->Counts();
  report.measure_seconds = SecondsBetween(t0, Clock::now());
  c.metrics_end = Scrape(target);
  report.rss_connected = report.cpu_end;

  if (!clients.Stop(20)) error("cycles still under way 20 s after the end");
  c.final = clients.Counts();
  c.welcome_ns = clients.WelcomeLatency();
  c.cycle_ns = clients.CycleLatency();
  report.fleet.latency_ns = c.welcome_ns;

  // Every connection is closed now: each watcher must end up with a CONNECTED and a
  // DISCONNECTED per cycle, an OFFLINE per ONLINE, and every event the server made.
  auto settle_start = Clock::now();
  const double settle = absl::GetFlag(FLAGS_churn_settle);
  while (true) {
    c.metrics_final = Scrape(target);
    if (watchers) c.watch_final = watchers->Counts();
    double made = ChurnReport::Delta(c.metrics_base, c.metrics_final, 0);
    bool complete = true;
    for (const WatcherCounts& w : c.watch_final) {
      complete = complete && w.connected >= c.final.done && w.disconnected >= c.final.done &&
                 w.offline >= w.online && (made < 0 || w.events >= made);
    }
    if (complete || SecondsBetween(settle_start, Clock::now()) > settle) break;
    Sleep(0.25);
  }
  c.settle_seconds = SecondsBetween(settle_start, Clock::now());
  if (watchers) watchers->Stop();
  report.rss_after = ReadProcStats(target.pid);
  report.client_cpu = SelfCpuSeconds() - self_cpu0;

  // Verdict.
  if (c.final.failed > 0) {
    error(std::to_string(c.final.failed) + " cycles failed (" + clients.FirstError() + ")");
  }
  if (c.cycles() == 0) error("no cycle completed in the measured window");
  double made = ChurnReport::Delta(c.metrics_base, c.metrics_final, 0);
  double connects = ChurnReport::Delta(c.metrics_base, c.metrics_final, 1);
  if (connects >= 0 && connects != static_cast<double>(c.final.done + c.final.failed) &&
      c.final.failed == 0) {
    error("the server counted " + std::to_string(static_cast<uint64_t>(connects)) +
          " connects for " + std::to_string(c.final.done) + " cycles");
  }
  double drops = ChurnReport::Delta(c.metrics_base, c.metrics_final, 3);
  if (drops > 0) error(std::to_string(static_cast<uint64_t>(drops)) + " presence watchers dropped");
  double lost = ChurnReport::Delta(c.metrics_base, c.metrics_final, 4);
  if (lost > 0) error(std::to_string(static_cast<uint64_t>(lost)) + " presence reports dropped");
  for (size_t i = 0; i < c.watch_final.size(); ++i) {
    const WatcherCounts& w = c.watch_final[i];
    std::string who = "watcher " + std::to_string(i) + ": ";
    if (w.ended) error(who + "ended during the run (" + w.end_status + ")");
    if (w.gaps > 0) error(who + std::to_string(w.gaps) + " cursors missed");
    if (w.out_of_order > 0) error(who + std::to_string(w.out_of_order) + " cursors out of order");
    if (w.resync > 0) error(who + std::to_string(w.resync) + " RESYNC events");
    if (w.other > 0) error(who + std::to_string(w.other) + " events of an unknown kind");
    if (made >= 0 && static_cast<double>(w.events) != made) {
      error(who + std::to_string(w.events) + " events read, the server made " +
            std::to_string(static_cast<uint64_t>(made)));
    }
    if (c.final.failed == 0 && (w.connected != c.final.done || w.disconnected != c.final.done)) {
      error(who + std::to_string(w.connected) + " CONNECTED and " + std::to_string(w.disconnected) +
            " DISCONNECTED for " + std::to_string(c.final.done) + " cycles");
    }
    if (w.online != w.offline) {
      error(who + std::to_string(w.online) + " ONLINE but " + std::to_string(w.offline) +
            " OFFLINE once every connection closed (--churn_settle too short?)");
    }
  }
}

// One measured run: its own pushd (when starting one), fresh users, fresh connections.
Report RunOnce(const std::string& scenario, const std::string& mode, const Sizes& sizes,
               Target* target_out) {
  Report report;
  report.scenario = scenario;
  report.mode = mode;
  report.watched_pids = WatchPids();
  Target& target = *target_out;
  ServerProcess server;
  auto fail = [&report](const std::string& why) {
    report.errors.push_back(why);
    report.ok = false;
    return report;
  };
  if (!absl::GetFlag(FLAGS_pushd).empty()) {
    std::string error;
    if (!server.Start(absl::GetFlag(FLAGS_pushd), SplitArgs(absl::GetFlag(FLAGS_pushd_args)),
                      &error)) {
      return fail(error);
    }
    target.grpc = "127.0.0.1:" + std::to_string(server.grpc_port());
    target.ws_host = "127.0.0.1";
    target.ws_port = server.ws_port();
    target.pid = server.pid();
    target.started = true;
  } else {
    // Checked by ValidTarget before the first run.
    std::string grpc_host;
    int grpc_port = 0;
    target.grpc = absl::GetFlag(FLAGS_grpc);
    SplitHostPort(target.grpc, &grpc_host, &grpc_port);
    SplitHostPort(absl::GetFlag(FLAGS_ws), &target.ws_host, &target.ws_port);
    if (target.ws_host == "localhost") target.ws_host = "127.0.0.1";
    target.pid = absl::GetFlag(FLAGS_server_pid);
  }

  if (scenario == "churn") {
    RunChurn(sizes, target, &report);
    server.Stop();
    report.ok = report.errors.empty();
    return report;
  }

  const int tabs = scenario == "multitab" || absl::GetFlag(FLAGS_tabs) > 0 ? sizes.tabs : 1;
  const int n_users = sizes.connections / tabs;
  report.connections = static_cast<uint64_t>(sizes.connections);
  report.users = static_cast<uint64_t>(n_users);
  report.tabs = static_cast<uint64_t>(tabs);
  UserTable users(MakeUsers(static_cast<size_t>(n_users)));
  std::vector<uint32_t> conn_user(static_cast<size_t>(sizes.connections));
  for (size_t i = 0; i < conn_user.size(); ++i) conn_user[i] = static_cast<uint32_t>(i % n_users);

  FleetOptions fleet_options;
  fleet_options.host = target.ws_host;
  fleet_options.port = target.ws_port;
  fleet_options.io_threads = absl::GetFlag(FLAGS_io_threads);
  fleet_options.connect_concurrency = absl::GetFlag(FLAGS_connect_concurrency);
  if (!absl::GetFlag(FLAGS_slow_log).empty()) {
    fleet_options.slow_ns = static_cast<int64_t>(absl::GetFlag(FLAGS_slow_ms) * 1e6);
  }
  int ips = absl::GetFlag(FLAGS_source_ips);
  fleet_options.source_ips = ips > 0 ? ips : (sizes.connections + 4999) / 5000;
  fleet_options.stop_reading = scenario == "flood";
  fleet_options.device_ids = absl::GetFlag(FLAGS_device_ids);
  WsFleet fleet(fleet_options);

  Pusher pusher(target.grpc, absl::GetFlag(FLAGS_channels), &users);
  {
    std::string error;
    if (!pusher.WaitReady(10, &error)) return fail(error + " (" + target.grpc + ")");
  }
  const double drain = absl::GetFlag(FLAGS_drain_seconds);
  const double self_cpu0 = SelfCpuSeconds();
  report.rss_before = ReadProcStats(target.pid);
  auto connect = [&] {
    auto deadline = Clock::now() + std::chrono::seconds(90);
    report.connect_seconds = fleet.Connect(users.names, conn_user, deadline);
    if (fleet.Welcomed() < report.connections) {
      report.errors.push_back(std::to_string(report.connections - fleet.Welcomed()) +
                              " connections did not open");
    }
  };

  if (scenario == "flood") {
    // Every connection stops reading after its welcome; each user then gets --flood_messages
    // (unary, round robin, no waiting for deliveries). What counts is the server's peak RSS
    // (VmHWM) against its memory bounds; nothing is expected to arrive.
    report.latency_meaningful = false;
    connect();
    Sleep(0.5);
    report.rss_connected = ReadProcStats(target.pid);
    PushOptions o = BasePushOptions("unary", tabs);
    o.round_robin = true;
    o.max_requests = static_cast<uint64_t>(n_users) *
                     static_cast<uint64_t>(std::max(1, absl::GetFlag(FLAGS_flood_messages)));
    o.duration_s = 600;
    o.max_backlog = 0;
    report.cpu_start = report.rss_connected;
    report.watched_start = ReadWatched(report.watched_pids);
    auto t0 = Clock::now();
    report.push = pusher.Run(o, {});
    report.pushed = true;
    report.mode = "unary";
    Sleep(1);
    report.measure_seconds = SecondsBetween(t0, Clock::now());
  } else if (scenario == "replay") {
    // Everything is pushed while nobody is connected, then everyone connects at once.
    report.latency_meaningful = false;
    PushOptions o = BasePushOptions("unary", tabs);
    o.round_robin = true;
    o.max_requests = static_cast<uint64_t>(absl::GetFlag(FLAGS_messages));
    o.duration_s = 120;
    o.max_backlog = 0;
    report.push = pusher.Run(o, {});
    report.pushed = true;
    report.mode = "unary";
    // Memory is measured from here: the stored backlog is not the connections' cost.
    report.rss_before = ReadProcStats(target.pid);
    report.cpu_start = report.rss_before;
    report.watched_start = ReadWatched(report.watched_pids);
    auto t0 = Clock::now();
    report.origin_ns = NowNanos();
    connect();
    auto t1 = WaitForDeliveries(fleet, ExpectedDeliveries(users, tabs), drain);
    report.measure_seconds = SecondsBetween(t0, t1);
    report.rss_connected = ReadProcStats(target.pid);
  } else {
    connect();
    Sleep(0.5);  // let the server settle before the "connected" reading
    report.rss_connected = ReadProcStats(target.pid);
    if (scenario == "idle") {
      report.cpu_start = report.rss_connected;
      report.watched_start = ReadWatched(report.watched_pids);
      double hold = absl::GetFlag(FLAGS_hold);
      auto start = Clock::now();
      while (SecondsBetween(start, Clock::now()) < hold && fleet.Dropped() == 0) Sleep(0.05);
      report.hold_seconds = SecondsBetween(start, Clock::now());
      report.cpu_end = ReadProcStats(target.pid);
      report.watched_end = ReadWatched(report.watched_pids);
      report.rss_held = report.cpu_end;
      // Prove every connection is still alive: one message to each user.
      PushOptions o = BasePushOptions("unary", tabs);
      o.round_robin = true;
      o.max_requests = static_cast<uint64_t>(n_users);
      o.duration_s = 120;
      report.origin_ns = NowNanos();
      report.push = pusher.Run(o, [&fleet] { return fleet.Unique(); });
      report.mode = "unary";
      WaitForDeliveries(fleet, ExpectedDeliveries(users, tabs), drain);
    } else {
      PushOptions o = BasePushOptions(report.mode, tabs);
      o.duration_s = sizes.duration;
      o.rate = sizes.rate;
      report.rate = sizes.rate;
      report.cpu_start = ReadProcStats(target.pid);
      report.watched_start = ReadWatched(report.watched_pids);
      auto t0 = Clock::now();
      report.origin_ns = NowNanos();
      report.push = pusher.Run(o, [&fleet] { return fleet.Unique(); });
      report.pushed = true;
      auto t1 = WaitForDeliveries(fleet, ExpectedDeliveries(users, tabs), drain);
      report.measure_seconds = SecondsBetween(t0, t1);
    }
  }
  report.rss_after = ReadProcStats(target.pid);
  if (scenario != "idle") {
    report.cpu_end = report.rss_after;
    report.watched_end = ReadWatched(report.watched_pids);
  }
  report.client_cpu = SelfCpuSeconds() - self_cpu0;
  report.seq_anomalies = SeqAnomalies(users);
  report.fleet = fleet.Collect([&users](uint32_t u) { return users.pushed[u].load(); });
  if (!absl::GetFlag(FLAGS_slow_log).empty()) {
    WriteSlowLog(absl::GetFlag(FLAGS_slow_log), report.fleet.slow, report.origin_ns);
  }
  server.Stop();

  // Verdict: the contract's delivery rules, and a tool that did everything it set out to.
  const FleetTotals& f = report.fleet;
  auto check = [&report](bool bad, const std::string& what) {
    if (bad) report.errors.push_back(what);
  };
  if (scenario != "flood") {  // flood: the readers stall on purpose and may be closed
    check(f.lost > 0, std::to_string(f.lost) + " messages lost");
    check(f.duplicated > 0, std::to_string(f.duplicated) + " messages duplicated");
    check(f.reordered > 0, std::to_string(f.reordered) + " messages out of order");
    check(f.gaps > 0, std::to_string(f.gaps) + " gap frames");
    check(f.dropped > 0, std::to_string(f.dropped) + " connections dropped");
  }
  check(f.bad_frames > 0, std::to_string(f.bad_frames) + " unexpected frames");
  check(report.push.failed > 0,
        std::to_string(report.push.failed) + " pushes failed (" + report.push.first_error + ")");
  check(report.seq_anomalies > 0,
        std::to_string(report.seq_anomalies) + " users whose seqs are not 1..pushes");
  check(report.push.pushes_ok == 0 && f.connections > 0, "nothing was pushed");
  if (!f.first_error.empty() && !report.errors.empty()) report.errors.push_back(f.first_error);
  report.ok = report.errors.empty();
  return report;
}

bool ValidTarget() {
  if (!absl::GetFlag(FLAGS_pushd).empty()) return true;
  std::string grpc_host, ws_host;
  int grpc_port = 0, ws_port = 0;
  if (!SplitHostPort(absl::GetFlag(FLAGS_grpc), &grpc_host, &grpc_port) ||
      !SplitHostPort(absl::GetFlag(FLAGS_ws), &ws_host, &ws_port)) {
    std::fprintf(stderr, "pushbench: pass --pushd=PATH, or --grpc=HOST:PORT and --ws=HOST:PORT\n");
    return false;
  }
  // A load generator aimed elsewhere by mistake is a denial of service: loopback only.
  if (!IsLoopback(grpc_host) || !IsLoopback(ws_host)) {
    std::fprintf(stderr, "pushbench: only loopback servers (127.x.x.x) may be targeted\n");
    return false;
  }
  return true;
}

int Run(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "pushbench --scenario=idle|throughput|latency|multitab|replay|flood|churn "
      "(--pushd=PATH | --grpc=HOST:PORT --ws=HOST:PORT [--server_pid=PID]) [flags]");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built without NDEBUG, so every Mutex (gRPC's included) would run deadlock
  // detection; the load tool should spend its CPU on load.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  signal(SIGPIPE, SIG_IGN);
  RaiseOpenFilesLimit();

  const std::string scenario = absl::GetFlag(FLAGS_scenario);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (scenario != "idle" && scenario != "throughput" && scenario != "latency" &&
      scenario != "multitab" && scenario != "replay" && scenario != "flood" &&
      scenario != "churn") {
    std::fprintf(stderr,
                 "pushbench: --scenario=%s: want idle, throughput, latency, multitab, replay, "
                 "flood or churn\n",
                 scenario.c_str());
    return 2;
  }
  if (mode != "unary" && mode != "stream" && mode != "broadcast") {
    std::fprintf(stderr, "pushbench: --mode=%s: want unary, stream or broadcast\n", mode.c_str());
    return 2;
  }
  Sizes sizes = ScenarioSizes(scenario);
  if (sizes.connections % sizes.tabs != 0) {
    std::fprintf(stderr, "pushbench: --connections must be a multiple of --tabs\n");
    return 2;
  }
  uint64_t files = OpenFilesLimit();
  if (static_cast<uint64_t>(sizes.connections) + 100 > files) {
    std::fprintf(stderr,
                 "pushbench: %d connections need more open files than the limit of %llu allows\n",
                 sizes.connections, static_cast<unsigned long long>(files));
    return 2;
  }
  if (!ValidTarget()) return 2;
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));

  // Hard stop: whatever hangs, the tool ends, and a pushd it started goes with it.
  double max_seconds = absl::GetFlag(FLAGS_max_seconds) * runs;
  std::thread([max_seconds] {
    Sleep(max_seconds);
    std::fprintf(stderr, "pushbench: time limit of %.0f s exceeded; stopping\n", max_seconds);
    std::printf("{\"tool\":\"pushbench\",\"ok\":false,\"errors\":[\"time limit exceeded\"]}\n");
    std::fflush(stdout);
    if (ChildServerPid() > 0) kill(ChildServerPid(), SIGKILL);
    std::_Exit(3);
  }).detach();

  std::vector<Report> reports;
  for (int i = 0; i < runs; ++i) {
    Target target;
    reports.push_back(RunOnce(scenario, mode, sizes, &target));
    if (runs > 1) std::printf("run %d of %d\n", i + 1, runs);
    PrintTable(reports.back(), target);
    PrintJson(reports.back(), target);
    if (i + 1 < runs) Sleep(2);  // let the kernel reap the last run's sockets
  }
  if (runs > 1) PrintSummary(reports);
  for (const Report& r : reports) {
    if (!r.ok) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace pushbench

int main(int argc, char** argv) { return pushbench::Run(argc, argv); }
