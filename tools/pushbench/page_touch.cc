// page_touch: what the first write to a fresh page of anonymous memory costs on this machine,
// the price a process pays for every page its heap grows by (pushd's store keeps each message,
// about 800 bytes of heap, so while the store fills a push costs about a fifth of a page).
// Maps `mib` MiB and writes one byte per 4 KiB page, in four ways; prints CPU per page:
//   first touch          a plain mapping written page by page (what malloc's growth costs)
//   second touch         the same pages again (the floor: no fault)
//   populate + touch     MADV_POPULATE_WRITE first (one call), then the writes
//   populate alone       that call's own share
//   huge pages           a 2 MiB-aligned mapping with MADV_HUGEPAGE (transparent huge pages, what
//                        pushd's jemalloc asks for), written page by page: one fault per 2 MiB
//                        when the kernel grants huge pages (AnonHugePages in /proc/meminfo)
//   page_touch [mib=200]
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace {

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

char* Map(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return static_cast<char*>(p);
}

// CPU microseconds per page to write one byte to each page.
double Touch(char* p, size_t bytes, char value) {
  double start = CpuSeconds();
  for (size_t i = 0; i < bytes; i += 4096) p[i] = value;
  return (CpuSeconds() - start) * 1e6 / static_cast<double>(bytes / 4096);
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? static_cast<size_t>(std::atol(argv[1])) : 200;
  size_t bytes = mib << 20;
  char* a = Map(bytes);
  double first = Touch(a, bytes, 1);
  double second = Touch(a, bytes, 2);
  char* b = Map(bytes);
  double start = CpuSeconds();
  int rc = madvise(b, bytes, MADV_POPULATE_WRITE);
  double populate = (CpuSeconds() - start) * 1e6 / static_cast<double>(bytes / 4096);
  double after = Touch(b, bytes, 3);
  std::printf("pages %zu\nfirst touch        %.2f us/page\nsecond touch       %.2f us/page\n",
              bytes / 4096, first, second);
  if (rc == 0) {
    std::printf("populate + touch   %.2f us/page\npopulate alone     %.2f us/page\n",
                populate + after, populate);
  } else {
    std::printf("MADV_POPULATE_WRITE not supported here\n");
  }
  // Transparent huge pages: map 2 MiB more than asked so the region can start on a 2 MiB
  // boundary, where a huge page can back it.
  constexpr size_t kHuge = size_t{2} << 20;
  char* raw = Map(bytes + kHuge);
  char* h = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kHuge - 1) & ~(kHuge - 1));
  if (madvise(h, bytes, MADV_HUGEPAGE) == 0) {
    std::printf("huge pages         %.2f us/page\n", Touch(h, bytes, 4));
  } else {
    std::printf("MADV_HUGEPAGE not supported here\n");
  }
  munmap(a, bytes);
  munmap(b, bytes);
  munmap(raw, bytes + kHuge);
  return 0;
}
