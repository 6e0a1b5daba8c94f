// pushd: the push service process (gRPC PushService + WebSocket edge).

#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/base/prefaulted_heap.h"
#include "common/config/config.h"
#include "services/app.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

// Open files bound connections; take everything the hard limit allows.
rlim_t RaiseOpenFilesLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock would also update a
  // global deadlock graph (7-12% of pushd's CPU under load, see BENCHMARKS.md). Our mutexes are
  // leaf locks (no lock is taken while holding another); the unit tests keep the detection on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h" || a == "--helpfull") {
      std::cout << push::FlagsHelp();
      return 0;
    }
  }
  absl::StatusOr<push::Config> config = push::ParseConfig(args, push::ProcessEnvironment());
  if (!config.ok()) {
    std::fprintf(stderr, "pushd: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }

  auto logger = spdlog::stderr_color_mt("pushd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(config->log_level));

  // Signals are taken synchronously by the main thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  rlim_t files = RaiseOpenFilesLimit();
  const bool auto_max_connections = config->max_connections == 0;
  const uint32_t capacity = push::MaxConnectionsFor(files);
  if (auto_max_connections) config->max_connections = capacity;
  // Heap memory for the threads that carry pushes (the gRPC queue threads, absent on an edge-only
  // node), faulted in ahead by an idle-priority thread (common/base/prefaulted_heap.h): 2 chunks
  // of 2 MiB, about a second of the latency scenario's growth, out of a range of address space
  // sized for what those threads hold at most: twice the store's bound, plus the send queues'
  // (the flag's default bound when --max_queued_bytes=0 leaves them unbounded).
  std::string prefaulted_heap = "off (edge role: no gRPC queue threads)";
  if (config->role != push::Role::kEdge) {
    const uint64_t queued =
        config->max_queued_bytes != 0 ? config->max_queued_bytes : push::Config{}.max_queued_bytes;
    const uint64_t reserve =
        std::max<uint64_t>(uint64_t{1} << 30, 2 * config->max_store_bytes + queued);
    std::string why_not;
    prefaulted_heap = push::StartPrefaultedHeap(2, reserve, &why_not)
                          ? absl::StrCat("on (", reserve >> 20, " MiB reserved)")
                          : absl::StrCat("off (", why_not, ")");
  }
  push::App app(*config);
  if (absl::Status s = app.Start(); !s.ok()) {
    std::fprintf(stderr, "pushd: %s\n", std::string(s.message()).c_str());
    // A flag whose value turns out unusable (an unreadable key file) is a bad flag value.
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  spdlog::info(
      "pushd node={} grpc={} ws={} open-files={} max_connections={}{} max_connections_per_user={} "
      "handshake_timeout={} prefaulted_heap={}",
      config->node_id, app.grpc_port(), app.ws_port(), files, config->max_connections,
      auto_max_connections ? " (from open-files)" : "", config->max_connections_per_user,
      absl::FormatDuration(config->handshake_timeout), prefaulted_heap);
  if (!auto_max_connections && config->max_connections > capacity) {
    // Not refused: the hard limit may rise in another environment; accepting backs off and
    // counts limit="open_files" when descriptors run out first.
    spdlog::warn(
        "--max_connections={} is more than the open-files limit {} allows (about {}): new "
        "connections will fail for lack of descriptors before the limit is reached",
        config->max_connections, files, capacity);
  }
  // One machine-readable line on stdout for scripts and tests that bind port 0.
  std::printf("pushd ready grpc_port=%d ws_port=%d\n", app.grpc_port(), app.ws_port());
  std::fflush(stdout);

  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) app.ReloadApiKey();
  spdlog::info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  app.Drain();
  push::StopPrefaultedHeap();
  return 0;
}
