// vcpu_stalls: how often this machine stops running a thread that only sleeps. One thread per
// CPU, pinned, sleeps 1 ms at a time and prints every wake-up later than --late_ms (CLOCK_MONOTONIC
// seconds, the CPU, how late in ms), then a count per CPU. On an idle machine a late wake-up can
// only come from the hypervisor taking the vCPU away, which no server can hide from its tail.
//   vcpu_stalls [seconds=20] [late_ms=4]
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <thread>
#include <vector>

namespace {

double Now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? atof(argv[1]) : 20;
  const double late = (argc > 2 ? atof(argv[2]) : 4) / 1e3;
  const int cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  std::mutex mu;
  std::vector<int> stalls(static_cast<size_t>(cpus), 0);
  std::vector<double> worst(static_cast<size_t>(cpus), 0);
  std::vector<std::thread> threads;
  for (int cpu = 0; cpu < cpus; ++cpu) {
    threads.emplace_back([&, cpu] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);
      const timespec ms{0, 1000000};
      const double end = Now() + seconds;
      for (double t = Now(); t < end;) {
        nanosleep(&ms, nullptr);
        const double u = Now();
        if (u - t - 1e-3 > late) {
          std::lock_guard lock(mu);
          std::printf("%.4f cpu%d %.2f\n", u, cpu, (u - t - 1e-3) * 1e3);
          ++stalls[static_cast<size_t>(cpu)];
          if (u - t - 1e-3 > worst[static_cast<size_t>(cpu)])
            worst[static_cast<size_t>(cpu)] = u - t - 1e-3;
        }
        t = u;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int cpu = 0; cpu < cpus; ++cpu) {
    std::printf("cpu%d: %d wake-ups more than %.1f ms late in %.0f s, worst %.2f ms\n", cpu,
                stalls[static_cast<size_t>(cpu)], late * 1e3, seconds,
                worst[static_cast<size_t>(cpu)] * 1e3);
  }
}
