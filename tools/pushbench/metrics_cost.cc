// Why /metrics is hand-written: the cost per observation of pushd's counters and histograms
// (common/base/metrics.h: relaxed atomics) against prometheus-cpp 1.0 (Debian's prometheus-cpp-dev,
// which pushd does not depend on). Built as the target metrics_cost only when CMake finds
// prometheus-cpp (tools/pushbench/CMakeLists.txt); to re-run (numbers in deploy/README.md):
//   apt-get install prometheus-cpp-dev
//   cmake -S . -B build -G Ninja && ninja -C build metrics_cost   # re-run cmake after the install
//   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out build/tools/pushbench/metrics_cost
//   callgrind_annotate --inclusive=yes /tmp/cg.out | grep -E 'Ours|Prom'          # instructions
//   build/tools/pushbench/metrics_cost time                                    # ns per operation
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "common/base/metrics.h"

constexpr int kN = 2'000'000;
std::atomic<uint64_t> g_counter{0};

__attribute__((noinline)) void OursCounter() {
  for (int i = 0; i < kN; ++i) g_counter.fetch_add(1, std::memory_order_relaxed);
}
__attribute__((noinline)) void OursHistogram(push::LatencyHistogram& h) {
  for (int i = 0; i < kN; ++i) h.Observe(200'000 + (i & 1023) * 1000);
}
__attribute__((noinline)) void PromCounter(prometheus::Counter& c) {
  for (int i = 0; i < kN; ++i) c.Increment();
}
__attribute__((noinline)) void PromHistogram(prometheus::Histogram& h) {
  for (int i = 0; i < kN; ++i) h.Observe((200'000 + (i & 1023) * 1000) * 1e-9);
}

template <class F>
double NsPerOp(int threads, F f) {
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back(f);
  for (auto& t : ts) t.join();
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start)
             .count() /
         (double(kN) * threads);
}

int main(int argc, char** argv) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& cf = prometheus::BuildCounter().Name("c").Help("c").Register(*registry);
  auto& counter = cf.Add({{"result", "ok"}});
  std::vector<double> bounds(std::begin(push::LatencyHistogram::kBounds),
                             std::end(push::LatencyHistogram::kBounds));
  auto& hf = prometheus::BuildHistogram().Name("h").Help("h").Register(*registry);
  auto& hist = hf.Add({}, bounds);
  push::LatencyHistogram ours;
  bool timing = argc > 1;
  if (!timing) {
    OursCounter();
    OursHistogram(ours);
    PromCounter(counter);
    PromHistogram(hist);
    return 0;
  }
  for (int threads : {1, 2}) {
    std::printf(
        "threads=%d ours counter %.1f ns, prom counter %.1f ns, ours histogram %.1f ns, prom "
        "histogram %.1f ns\n",
        threads, NsPerOp(threads, OursCounter), NsPerOp(threads, [&] { PromCounter(counter); }),
        NsPerOp(threads, [&] { OursHistogram(ours); }),
        NsPerOp(threads, [&] { PromHistogram(hist); }));
  }
}
