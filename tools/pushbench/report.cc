// pushbench's output: the human table and the JSON line of each run, the summary of repeated
// runs, and the --slow_log file. tools/pushbench/side_by_side.sh and quiet_runs.py parse the
// JSON lines: their format is a contract.

#include "tools/pushbench/report.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>

namespace pushbench {
namespace {

double Ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

// Server memory per connection: growth from before connecting to connected (after the hold, for
// idle), before any message history accumulates.
double RssPerConnection(const Report& r) {
  if (r.connections == 0) return 0;
  int64_t connected = std::max(r.rss_connected.rss_kib, r.rss_held.rss_kib);
  return static_cast<double>(connected - r.rss_before.rss_kib) * 1024.0 / r.connections;
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\u%04x", c);
      out += b;
    } else {
      out += c;
    }
  }
  return out;
}

// The figures worth comparing across runs, with how to read each from a report.
struct Metric {
  const char* key;
  const char* label;
  double (*get)(const Report&);
};

double ServerCpu(const Report& r) { return r.cpu_end.cpu_seconds - r.cpu_start.cpu_seconds; }

// The CPU of the i-th --watch_pids process over the measured phase; nullopt when unreadable.
std::optional<double> WatchedCpu(const Report& r, size_t i) {
  if (i >= r.watched_start.size() || i >= r.watched_end.size() || !r.watched_start[i].ok ||
      !r.watched_end[i].ok) {
    return std::nullopt;
  }
  return r.watched_end[i].cpu_seconds - r.watched_start[i].cpu_seconds;
}

// --watch_pids together over the measured phase (0 when none was readable).
double WatchedCpu(const Report& r) {
  double sum = 0;
  for (size_t i = 0; i < r.watched_pids.size(); ++i) sum += WatchedCpu(r, i).value_or(0);
  return sum;
}

double PerCycle(const Report& r, double x) {
  uint64_t n = r.churn.cycles();
  return n > 0 ? x / static_cast<double>(n) : 0;
}

// Events a watcher read in the window (the first watcher; -1 without one), of one kind or all.
double WatcherWindow(const Report& r, uint64_t WatcherCounts::*field) {
  const ChurnReport& c = r.churn;
  if (c.watch_start.empty() || c.watch_end.empty()) return -1;
  return static_cast<double>(c.watch_end[0].*field - c.watch_start[0].*field);
}

const Metric kMetrics[] = {
    {"connect_rate", "connects/s",
     [](const Report& r) {
       return r.connect_seconds > 0 ? r.fleet.welcomed / r.connect_seconds : 0;
     }},
    {"delivered_per_s", "delivered msg/s",
     [](const Report& r) {
       return r.measure_seconds > 0 ? r.fleet.unique / r.measure_seconds : 0;
     }},
    {"measure_seconds", "measured seconds", [](const Report& r) { return r.measure_seconds; }},
    {"p50_ms", "latency p50 ms",
     [](const Report& r) { return Ms(r.fleet.latency_ns.Percentile(50)); }},
    {"p90_ms", "latency p90 ms",
     [](const Report& r) { return Ms(r.fleet.latency_ns.Percentile(90)); }},
    {"p99_ms", "latency p99 ms",
     [](const Report& r) { return Ms(r.fleet.latency_ns.Percentile(99)); }},
    {"p999_ms", "latency p99.9 ms",
     [](const Report& r) { return Ms(r.fleet.latency_ns.Percentile(99.9)); }},
    {"max_ms", "latency max ms", [](const Report& r) { return Ms(r.fleet.latency_ns.max()); }},
    {"rss_per_conn_bytes", "server RSS B/conn",
     [](const Report& r) { return RssPerConnection(r); }},
    {"server_cpu_seconds", "server CPU s", [](const Report& r) { return ServerCpu(r); }},
    {"deliveries_per_cpu_s", "deliveries/server CPU-s",
     [](const Report& r) { return ServerCpu(r) > 0 ? r.fleet.unique / ServerCpu(r) : 0; }},
    {"client_cpu_seconds", "pushbench CPU s", [](const Report& r) { return r.client_cpu; }},
    {"churn_cycles_per_s", "cycles/s",
     [](const Report& r) {
       return r.measure_seconds > 0 ? r.churn.cycles() / r.measure_seconds : 0;
     }},
    {"churn_server_us_per_cycle", "server us/cycle",
     [](const Report& r) { return PerCycle(r, ServerCpu(r) * 1e6); }},
    {"churn_watched_us_per_cycle", "watched pids us/cycle",
     [](const Report& r) { return PerCycle(r, WatchedCpu(r) * 1e6); }},
    {"churn_events_per_cycle", "presence events/cycle",
     [](const Report& r) {
       double d = ChurnReport::Delta(r.churn.metrics_start, r.churn.metrics_end, 0);
       return d < 0 ? 0 : PerCycle(r, d);
     }},
    {"churn_online_per_cycle", "ONLINE/cycle (watcher)",
     [](const Report& r) { return PerCycle(r, WatcherWindow(r, &WatcherCounts::online)); }},
    {"churn_welcome_p50_ms", "welcome p50 ms",
     [](const Report& r) { return Ms(r.churn.welcome_ns.Percentile(50)); }},
    {"churn_welcome_p99_ms", "welcome p99 ms",
     [](const Report& r) { return Ms(r.churn.welcome_ns.Percentile(99)); }},
};

bool Applies(const Metric& m, const Report& r) {
  std::string key = m.key;
  if (r.churn.on) {
    if (key == "churn_events_per_cycle") {
      return ChurnReport::Delta(r.churn.metrics_start, r.churn.metrics_end, 0) >= 0;
    }
    if (key == "churn_online_per_cycle") return !r.churn.watch_start.empty();
    if (key == "churn_watched_us_per_cycle") return !r.watched_pids.empty();
    if (key == "churn_server_us_per_cycle" || key == "server_cpu_seconds") return r.rss_before.ok;
    return key.rfind("churn_", 0) == 0 || key == "measure_seconds" || key == "client_cpu_seconds";
  }
  if (key.rfind("churn_", 0) == 0) return false;
  if (key.rfind("p", 0) == 0 || key == "max_ms") {
    return r.latency_meaningful && r.fleet.latency_ns.count() > 0;
  }
  if (key == "rss_per_conn_bytes" || key.rfind("server_", 0) == 0 ||
      key == "deliveries_per_cpu_s") {
    return r.rss_before.ok;
  }
  if (key == "delivered_per_s" || key == "measure_seconds") return r.measure_seconds > 0;
  return true;
}

// One line of a text report.
void Row(const char* name, const std::string& value) {
  std::printf("  %-20s %s\n", name, value.c_str());
}

// A "CPU of pid P" line per --watch_pids process: `describe` turns its CPU seconds into the
// value.
template <class Describe>
void WatchedRows(const Report& r, Describe describe) {
  for (size_t i = 0; i < r.watched_pids.size(); ++i) {
    std::optional<double> cpu = WatchedCpu(r, i);
    Row(("CPU of pid " + std::to_string(r.watched_pids[i])).c_str(),
        cpu ? describe(*cpu) : std::string("unreadable"));
  }
}

std::string KindCounts(const WatcherCounts& a, const WatcherCounts& b) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "%" PRIu64 " events: %" PRIu64 " CONNECTED, %" PRIu64 " DISCONNECTED, %" PRIu64
                " ONLINE, %" PRIu64 " OFFLINE",
                b.events - a.events, b.connected - a.connected, b.disconnected - a.disconnected,
                b.online - a.online, b.offline - a.offline);
  return buf;
}

void PrintChurnTable(const Report& r) {
  const ChurnReport& c = r.churn;
  auto* row = &Row;
  char buf[512];
  const uint64_t n = c.cycles();
  std::snprintf(buf, sizeof(buf),
                "%.0f/s target, %d workers, %d users, %.0f s warm-up, %d presence watchers", c.rate,
                c.workers, c.users, c.warmup_seconds, c.watchers);
  row("churn", buf);
  std::snprintf(buf, sizeof(buf),
                "%" PRIu64 " in %.2f s = %.0f/s (%" PRIu64 " started late); in all %" PRIu64
                " done, %" PRIu64 " failed",
                n, r.measure_seconds, r.measure_seconds > 0 ? n / r.measure_seconds : 0.0,
                c.end.late - c.start.late, c.final.done, c.final.failed);
  row("cycles (window)", buf);
  std::snprintf(buf, sizeof(buf), "welcome p50 %.3f p99 %.3f max %.3f; cycle p50 %.3f p99 %.3f",
                Ms(c.welcome_ns.Percentile(50)), Ms(c.welcome_ns.Percentile(99)),
                Ms(c.welcome_ns.max()), Ms(c.cycle_ns.Percentile(50)),
                Ms(c.cycle_ns.Percentile(99)));
  row("latency ms", buf);
  double made = ChurnReport::Delta(c.metrics_start, c.metrics_end, 0);
  if (made >= 0) {
    std::snprintf(buf, sizeof(buf), "%.0f made in the window = %.3f per cycle", made,
                  PerCycle(r, made));
    row("presence events", buf);
  } else {
    row("presence events", "not counted by this server (no pushd_presence_events_total)");
  }
  if (!c.watch_start.empty() && !c.watch_end.empty()) {
    row("watcher 0 (window)", KindCounts(c.watch_start[0], c.watch_end[0]));
  }
  for (size_t i = 0; i < c.watch_final.size(); ++i) {
    const WatcherCounts& w = c.watch_final[i];
    std::snprintf(buf, sizeof(buf),
                  "%s; cursors %" PRIu64 "..%" PRIu64 ", %" PRIu64 " missed, %" PRIu64
                  " out of order, %" PRIu64 " RESYNC%s",
                  KindCounts(WatcherCounts{}, w).c_str(), w.first_cursor + 1, w.last_cursor, w.gaps,
                  w.out_of_order, w.resync, w.ended ? (", ENDED: " + w.end_status).c_str() : "");
    row(("watcher " + std::to_string(i) + " (all)").c_str(), buf);
  }
  if (!c.watch_final.empty()) {
    std::snprintf(buf, sizeof(buf), "%.2f s after the cycles stopped", c.settle_seconds);
    row("watchers complete", buf);
  }
  if (r.rss_before.ok) {
    double cpu = ServerCpu(r);
    std::snprintf(buf, sizeof(buf), "%.3f s = %.1f us per cycle", cpu, PerCycle(r, cpu * 1e6));
    row("server CPU", buf);
  } else {
    row("server stats", "unavailable (pass --server_pid for an external server)");
  }
  WatchedRows(r, [&](double cpu) {
    std::snprintf(buf, sizeof(buf), "%.3f s = %.1f us per cycle", cpu, PerCycle(r, cpu * 1e6));
    return std::string(buf);
  });
  std::snprintf(buf, sizeof(buf), "%.2f s", r.client_cpu);
  row("pushbench CPU", buf);
  row("result", r.ok ? "OK" : "FAILED");
  for (const auto& e : r.errors) row("error", e);
}

}  // namespace

void PrintTable(const Report& r, const Target& t) {
  std::printf("pushbench %s%s against %s (pid %d%s)\n", r.scenario.c_str(),
              r.pushed ? (" (" + r.mode + ")").c_str() : "", t.grpc.c_str(),
              static_cast<int>(t.pid), t.started ? ", started by pushbench" : "");
  auto* row = &Row;
  char buf[512];
  if (r.churn.on) return PrintChurnTable(r);
  std::snprintf(buf, sizeof(buf),
                "%" PRIu64 " (%" PRIu64 " users x %" PRIu64 "), %" PRIu64
                " up in %.2f s = %.0f/s, %" PRIu64 " failed",
                r.connections, r.users, r.tabs, r.fleet.welcomed, r.connect_seconds,
                r.connect_seconds > 0 ? r.fleet.welcomed / r.connect_seconds : 0.0, r.fleet.failed);
  row("connections", buf);
  if (r.hold_seconds > 0) {
    std::snprintf(buf, sizeof(buf),
                  "%.0f s, %" PRIu64 " server pings answered, %" PRIu64 " dropped", r.hold_seconds,
                  r.fleet.pings, r.fleet.dropped);
    row("held", buf);
  }
  if (r.pushed) {
    std::snprintf(buf, sizeof(buf),
                  "%" PRIu64 " requests, %" PRIu64 " pushes ok, %" PRIu64
                  " failed, %.0f/s"
                  "%s",
                  r.push.requests, r.push.pushes_ok, r.push.failed,
                  r.push.seconds > 0 ? r.push.pushes_ok / r.push.seconds : 0.0,
                  r.rate > 0 ? (" (target " + std::to_string(static_cast<int>(r.rate)) +
                                " req/s, " + std::to_string(r.push.late) + " sent >1 ms late)")
                                   .c_str()
                             : "");
    row("pushes", buf);
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " in %.2f s = %.0f msg/s", r.fleet.unique,
                  r.measure_seconds,
                  r.measure_seconds > 0 ? r.fleet.unique / r.measure_seconds : 0.0);
    row("delivered", buf);
  }
  std::snprintf(buf, sizeof(buf),
                "%" PRIu64 " lost, %" PRIu64 " duplicated, %" PRIu64 " reordered, %" PRIu64
                " gaps, %" PRIu64 " extra (of %" PRIu64 " expected)",
                r.fleet.lost, r.fleet.duplicated, r.fleet.reordered, r.fleet.gaps, r.fleet.extra,
                r.fleet.expected);
  row("loss check", buf);
  const Histogram& h = r.fleet.latency_ns;
  if (h.count() > 0 && r.latency_meaningful) {
    std::snprintf(buf, sizeof(buf),
                  "p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (%" PRIu64 " samples)",
                  Ms(h.Percentile(50)), Ms(h.Percentile(90)), Ms(h.Percentile(99)),
                  Ms(h.Percentile(99.9)), Ms(h.max()), h.count());
    row("latency ms", buf);
  }
  if (r.pushed && r.push.rpc_latency_ns.count() > 0) {
    const Histogram& g = r.push.rpc_latency_ns;
    std::snprintf(buf, sizeof(buf), "p50 %.3f  p99 %.3f  max %.3f", Ms(g.Percentile(50)),
                  Ms(g.Percentile(99)), Ms(g.max()));
    row("rpc latency ms", buf);
  }
  if (r.rate > 0 && r.push.send_lag_ns.count() > 0) {
    // The latency above counts from each request's slot, so a late sender is charged to it
    // (no coordinated omission); this says how much of the tail is the sender's own lateness.
    const Histogram& g = r.push.send_lag_ns;
    std::snprintf(buf, sizeof(buf), "p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f",
                  Ms(g.Percentile(50)), Ms(g.Percentile(99)), Ms(g.Percentile(99.9)), Ms(g.max()));
    row("send lag ms", buf);
  }
  if (r.rss_before.ok) {
    std::snprintf(buf, sizeof(buf),
                  "before %" PRId64 ", connected %" PRId64 "%s, end %" PRId64 " (%.0f B/conn)",
                  r.rss_before.rss_kib, r.rss_connected.rss_kib,
                  r.rss_held.ok ? (", held " + std::to_string(r.rss_held.rss_kib)).c_str() : "",
                  r.rss_after.rss_kib, RssPerConnection(r));
    row("server RSS KiB", buf);
    std::snprintf(buf, sizeof(buf), "%" PRId64, r.rss_after.peak_rss_kib);
    row("server peak RSS KiB", buf);
    double cpu = ServerCpu(r);
    std::snprintf(buf, sizeof(buf), "%.2f s%s", cpu,
                  r.pushed && cpu > 0
                      ? (" = " + std::to_string(static_cast<int64_t>(r.fleet.unique / cpu)) +
                         " deliveries per server CPU-second")
                            .c_str()
                      : "");
    row("server CPU", buf);
  } else {
    row("server stats", "unavailable (pass --server_pid for an external server)");
  }
  WatchedRows(r, [&](double cpu) {
    std::snprintf(
        buf, sizeof(buf), "%.2f s%s", cpu,
        r.push.pushes_ok > 0
            ? (" = " + std::to_string(std::lround(cpu * 1e6 / r.push.pushes_ok)) + " us per push")
                  .c_str()
            : "");
    return std::string(buf);
  });
  std::snprintf(buf, sizeof(buf), "%.2f s", r.client_cpu);
  row("pushbench CPU", buf);
  row("result", r.ok ? "OK" : "FAILED");
  for (const auto& e : r.errors) row("error", e);
}

void PrintJson(const Report& r, const Target& t) {
  std::ostringstream j;
  j.setf(std::ios::fixed);
  j.precision(3);
  auto rate = [](double n, double s) { return s > 0 ? std::round(n / s) : 0.0; };
  j << "{\"tool\":\"pushbench\",\"scenario\":\"" << r.scenario << "\",\"mode\":\""
    << (r.pushed ? r.mode : "none") << "\",\"ok\":" << (r.ok ? "true" : "false")
    << ",\"connections\":" << r.connections << ",\"users\":" << r.users << ",\"tabs\":" << r.tabs
    << ",\"connected\":" << r.fleet.welcomed << ",\"connect_failed\":" << r.fleet.failed
    << ",\"connect_seconds\":" << r.connect_seconds
    << ",\"connect_rate\":" << rate(r.fleet.welcomed, r.connect_seconds)
    << ",\"dropped\":" << r.fleet.dropped << ",\"pings\":" << r.fleet.pings
    << ",\"hold_seconds\":" << r.hold_seconds << ",\"requests\":" << r.push.requests
    << ",\"pushes_ok\":" << r.push.pushes_ok << ",\"push_failed\":" << r.push.failed
    << ",\"push_seconds\":" << r.push.seconds
    << ",\"push_rate\":" << rate(r.push.pushes_ok, r.push.seconds) << ",\"target_rate\":" << r.rate
    << ",\"late\":" << r.push.late << ",\"reported_delivered\":" << r.push.delivered
    << ",\"expected\":" << r.fleet.expected << ",\"delivered\":" << r.fleet.unique
    << ",\"measure_seconds\":" << r.measure_seconds
    << ",\"delivered_per_s\":" << rate(r.fleet.unique, r.measure_seconds)
    << ",\"lost\":" << r.fleet.lost << ",\"duplicated\":" << r.fleet.duplicated
    << ",\"reordered\":" << r.fleet.reordered << ",\"gaps\":" << r.fleet.gaps
    << ",\"extra\":" << r.fleet.extra << ",\"bad_frames\":" << r.fleet.bad_frames
    << ",\"seq_anomalies\":" << r.seq_anomalies;
  const Histogram& h = r.fleet.latency_ns;
  if (h.count() > 0 && r.latency_meaningful) {
    j << ",\"latency_ms\":{\"p50\":" << Ms(h.Percentile(50)) << ",\"p90\":" << Ms(h.Percentile(90))
      << ",\"p99\":" << Ms(h.Percentile(99)) << ",\"p999\":" << Ms(h.Percentile(99.9))
      << ",\"max\":" << Ms(h.max()) << ",\"samples\":" << h.count() << "}";
  } else {
    j << ",\"latency_ms\":null";
  }
  const Histogram& g = r.push.rpc_latency_ns;
  if (g.count() > 0) {
    j << ",\"rpc_latency_ms\":{\"p50\":" << Ms(g.Percentile(50))
      << ",\"p99\":" << Ms(g.Percentile(99)) << ",\"max\":" << Ms(g.max()) << "}";
  }
  const Histogram& lag = r.push.send_lag_ns;
  if (r.rate > 0 && lag.count() > 0) {
    j << ",\"send_lag_ms\":{\"p50\":" << Ms(lag.Percentile(50))
      << ",\"p99\":" << Ms(lag.Percentile(99)) << ",\"p999\":" << Ms(lag.Percentile(99.9))
      << ",\"max\":" << Ms(lag.max()) << "}";
  }
  if (r.rss_before.ok) {
    double cpu = ServerCpu(r);
    j << ",\"server\":{\"pid\":" << t.pid << ",\"rss_before_kib\":" << r.rss_before.rss_kib
      << ",\"rss_connected_kib\":" << r.rss_connected.rss_kib
      << ",\"rss_held_kib\":" << (r.rss_held.ok ? r.rss_held.rss_kib : 0)
      << ",\"rss_after_kib\":" << r.rss_after.rss_kib
      << ",\"rss_peak_kib\":" << r.rss_after.peak_rss_kib
      << ",\"rss_per_conn_bytes\":" << std::round(RssPerConnection(r)) << ",\"cpu_seconds\":" << cpu
      << ",\"deliveries_per_cpu_s\":" << (cpu > 0 ? std::round(r.fleet.unique / cpu) : 0.0) << "}";
  } else {
    j << ",\"server\":null";
  }
  if (!r.watched_pids.empty()) {
    j << ",\"watched\":[";
    for (size_t i = 0; i < r.watched_pids.size(); ++i) {
      std::optional<double> watched = WatchedCpu(r, i);
      j << (i ? "," : "") << "{\"pid\":" << r.watched_pids[i] << ",\"cpu_seconds\":";
      if (watched) {
        j << *watched;
      } else {
        j << "null";
      }
      j << "}";
    }
    j << "]";
  }
  if (r.churn.on) {
    const ChurnReport& c = r.churn;
    const double cpu = ServerCpu(r);
    auto delta = [&c](size_t i) {
      double d = ChurnReport::Delta(c.metrics_start, c.metrics_end, i);
      return d < 0 ? std::string("null") : std::to_string(static_cast<uint64_t>(d));
    };
    j << ",\"churn\":{\"rate\":" << c.rate << ",\"workers\":" << c.workers
      << ",\"users\":" << c.users << ",\"warmup_seconds\":" << c.warmup_seconds
      << ",\"watchers\":" << c.watchers << ",\"cycles\":" << c.cycles()
      << ",\"window_seconds\":" << r.measure_seconds
      << ",\"cycles_per_s\":" << (r.measure_seconds > 0 ? c.cycles() / r.measure_seconds : 0)
      << ",\"late\":" << c.end.late - c.start.late << ",\"done\":" << c.final.done
      << ",\"failed\":" << c.final.failed;
    if (r.rss_before.ok) {
      j << ",\"server_cpu_seconds\":" << cpu
        << ",\"server_us_per_cycle\":" << PerCycle(r, cpu * 1e6);
    }
    if (!r.watched_pids.empty()) {
      j << ",\"watched_us_per_cycle\":" << PerCycle(r, WatchedCpu(r) * 1e6);
    }
    j << ",\"events\":" << delta(0) << ",\"connects\":" << delta(1)
      << ",\"client_disconnects\":" << delta(2)
      << ",\"welcome_ms\":{\"p50\":" << Ms(c.welcome_ns.Percentile(50))
      << ",\"p99\":" << Ms(c.welcome_ns.Percentile(99)) << ",\"max\":" << Ms(c.welcome_ns.max())
      << "},\"cycle_ms\":{\"p50\":" << Ms(c.cycle_ns.Percentile(50))
      << ",\"p99\":" << Ms(c.cycle_ns.Percentile(99)) << "}";
    auto counts = [&j](const WatcherCounts& a, const WatcherCounts& b) {
      j << "{\"events\":" << b.events - a.events << ",\"connected\":" << b.connected - a.connected
        << ",\"disconnected\":" << b.disconnected - a.disconnected
        << ",\"online\":" << b.online - a.online << ",\"offline\":" << b.offline - a.offline
        << ",\"resync\":" << b.resync - a.resync << ",\"gaps\":" << b.gaps - a.gaps
        << ",\"out_of_order\":" << b.out_of_order - a.out_of_order
        << ",\"last_cursor\":" << b.last_cursor << ",\"ended\":" << (b.ended ? "true" : "false")
        << "}";
    };
    j << ",\"watchers_window\":[";
    for (size_t i = 0; i < c.watch_end.size() && i < c.watch_start.size(); ++i) {
      if (i) j << ",";
      counts(c.watch_start[i], c.watch_end[i]);
    }
    j << "],\"watchers_final\":[";
    for (size_t i = 0; i < c.watch_final.size(); ++i) {
      if (i) j << ",";
      counts(WatcherCounts{}, c.watch_final[i]);
    }
    double made = ChurnReport::Delta(c.metrics_base, c.metrics_final, 0);
    j << "],\"events_total\":"
      << (made < 0 ? std::string("null") : std::to_string(static_cast<uint64_t>(made)))
      << ",\"settle_seconds\":" << c.settle_seconds << "}";
  }
  j << ",\"client_cpu_seconds\":" << r.client_cpu << ",\"errors\":[";
  for (size_t i = 0; i < r.errors.size(); ++i) {
    j << (i ? "," : "") << "\"" << JsonEscape(r.errors[i]) << "\"";
  }
  j << "]}";
  std::printf("%s\n", j.str().c_str());
  std::fflush(stdout);
}

void WriteSlowLog(const std::string& path, std::vector<SlowMessage> slow, int64_t origin_ns) {
  std::sort(slow.begin(), slow.end(), [](const SlowMessage& a, const SlowMessage& b) {
    return a.received_ns < b.received_ns;
  });
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "pushbench: cannot write %s\n", path.c_str());
    return;
  }
  std::fprintf(f,
               "# first push at %lld ns (CLOCK_MONOTONIC)\n# seconds_since_first_push latency_ms "
               "connection\n",
               static_cast<long long>(origin_ns));
  for (const SlowMessage& m : slow) {
    std::fprintf(f, "%.4f %.3f %u\n", (m.received_ns - origin_ns) / 1e9, m.latency_ns / 1e6,
                 m.connection);
  }
  std::fclose(f);
}

// Medians (and the range) over repeated runs: the figures BENCHMARKS.md quotes.
void PrintSummary(const std::vector<Report>& reports) {
  const Report& first = reports.front();
  bool ok = true;
  uint64_t lost = 0, duplicated = 0;
  for (const Report& r : reports) {
    ok = ok && r.ok;
    lost += r.fleet.lost;
    duplicated += r.fleet.duplicated + r.fleet.reordered;
  }
  std::printf("pushbench %s%s: median of %zu runs (min .. max)\n", first.scenario.c_str(),
              first.pushed ? (" (" + first.mode + ")").c_str() : "", reports.size());
  std::ostringstream j;
  j.setf(std::ios::fixed);
  j.precision(3);
  j << "{\"tool\":\"pushbench\",\"summary\":true,\"scenario\":\"" << first.scenario
    << "\",\"mode\":\"" << (first.pushed ? first.mode : "none") << "\",\"runs\":" << reports.size()
    << ",\"ok\":" << (ok ? "true" : "false") << ",\"connections\":" << first.connections
    << ",\"lost\":" << lost << ",\"duplicated\":" << duplicated << ",\"median\":{";
  bool comma = false;
  for (const Metric& m : kMetrics) {
    if (!Applies(m, first)) continue;
    std::vector<double> v;
    for (const Report& r : reports) v.push_back(m.get(r));
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    std::printf("  %-24s %12.3f   (%.3f .. %.3f)\n", m.label, median, v.front(), v.back());
    j << (comma ? "," : "") << "\"" << m.key << "\":" << median;
    comma = true;
  }
  std::printf("  %-24s %12s   (%" PRIu64 " lost, %" PRIu64 " duplicated or reordered in all)\n",
              "result", ok ? "OK" : "FAILED", lost, duplicated);
  j << "}}";
  std::printf("%s\n", j.str().c_str());
  std::fflush(stdout);
}

}  // namespace pushbench
