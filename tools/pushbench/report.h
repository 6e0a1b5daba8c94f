#pragma once

// What one pushbench run measured, and how it is printed (report.cc).

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tools/pushbench/churn.h"
#include "tools/pushbench/pusher.h"
#include "tools/pushbench/stats.h"
#include "tools/pushbench/ws_fleet.h"

namespace pushbench {

// The server a run measured.
struct Target {
  std::string grpc;
  std::string ws_host;
  int ws_port = 0;
  pid_t pid = 0;
  bool started = false;
};

// The churn scenario's figures: counters at the start and end of the measured window (after the
// warm-up), and at the very end (cycles stopped, watchers caught up). The series scraped from
// /metrics are kChurnSeries (UINT64_MAX: absent, e.g. a pushd without presence).
struct ChurnReport {
  static constexpr const char* kSeries[] = {"pushd_presence_events_total", "pushd_connects_total",
                                            "pushd_disconnects_total{reason=\"client\"}",
                                            "pushd_presence_watcher_drops_total",
                                            "pushd_presence_reports_dropped_total"};
  bool on = false;
  int watchers = 0, users = 0, workers = 0;
  double rate = 0, warmup_seconds = 0;
  ChurnCounts start, end, final;
  std::vector<WatcherCounts> watch_start, watch_end, watch_final;
  std::vector<uint64_t> metrics_base, metrics_start, metrics_end, metrics_final;
  Histogram welcome_ns, cycle_ns;
  double settle_seconds = 0;  // after the cycles stopped, until the watchers had everything

  uint64_t cycles() const { return end.done - start.done; }
  // A /metrics series' growth between two scrapes (-1: not available).
  static double Delta(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b, size_t i) {
    if (a.size() <= i || b.size() <= i || a[i] == UINT64_MAX || b[i] == UINT64_MAX) return -1;
    return static_cast<double>(b[i] - a[i]);
  }
};

// What one run measured, and its verdict.
struct Report {
  std::string scenario;
  std::string mode;
  bool ok = true;
  std::vector<std::string> errors;
  uint64_t connections = 0, users = 0, tabs = 1;
  double connect_seconds = 0;
  PushStats push;
  bool pushed = false;
  FleetTotals fleet;
  uint64_t seq_anomalies = 0;  // users whose highest seq differs from their confirmed pushes
  double measure_seconds = 0;  // push start (or connect start, for replay) to last delivery
  double hold_seconds = 0;
  ProcStats rss_before, rss_connected, rss_held, rss_after, cpu_start, cpu_end;
  // --watch_pids: other processes' CPU over the same phase as cpu_start..cpu_end.
  std::vector<pid_t> watched_pids;
  std::vector<ProcStats> watched_start, watched_end;
  double client_cpu = 0;
  double rate = 0;
  bool latency_meaningful = true;
  int64_t origin_ns = 0;  // when pushing started (steady clock), for --slow_log
  ChurnReport churn;
};

// The human table of one run.
void PrintTable(const Report& r, const Target& t);
// One run as a single JSON line on stdout (flushed): the line scripts read.
void PrintJson(const Report& r, const Target& t);
// Medians and ranges over repeated runs (--runs): a table, then one JSON line.
void PrintSummary(const std::vector<Report>& reports);
// --slow_log: every message slower than --slow_ms, in arrival order, to `path`.
void WriteSlowLog(const std::string& path, std::vector<SlowMessage> slow, int64_t origin_ns);

}  // namespace pushbench
