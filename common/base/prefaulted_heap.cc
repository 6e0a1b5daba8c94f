#include "common/base/prefaulted_heap.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

#include "spdlog/spdlog.h"

// jemalloc's interface, when jemalloc is the process's malloc (weak: null otherwise). The hook
// table's layout is jemalloc's extent_hooks_t (jemalloc/jemalloc.h, stable since 5.0); it is
// declared here so that the libraries do not depend on jemalloc's headers.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace push {
namespace {

struct ExtentHooks;
using AllocHook = void*(ExtentHooks*, void*, size_t, size_t, bool*, bool*, unsigned);
using DallocHook = bool(ExtentHooks*, void*, size_t, bool, unsigned);
using DestroyHook = void(ExtentHooks*, void*, size_t, bool, unsigned);
using CommitHook = bool(ExtentHooks*, void*, size_t, size_t, size_t, unsigned);
using PurgeHook = bool(ExtentHooks*, void*, size_t, size_t, size_t, unsigned);
using SplitHook = bool(ExtentHooks*, void*, size_t, size_t, size_t, bool, unsigned);
using MergeHook = bool(ExtentHooks*, void*, size_t, void*, size_t, bool, unsigned);
struct ExtentHooks {
  AllocHook* alloc;
  DallocHook* dalloc;
  DestroyHook* destroy;
  CommitHook* commit;
  CommitHook* decommit;
  PurgeHook* purge_lazy;
  PurgeHook* purge_forced;
  SplitHook* split;
  MergeHook* merge;
};

constexpr size_t kChunk = size_t{2} << 20;  // one huge page
constexpr int kMaxReady = 32;
// The futex word is the atomic's own 4 bytes.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
              std::atomic<uint32_t>::is_always_lock_free);

// Everything here lives as long as the process: jemalloc calls the hooks of an arena until exit.
// The hooks run inside jemalloc (its locks held), so they must not allocate, and they must not
// wait for the refill thread, which runs only when nothing else wants the CPU: a chunk changes
// hands through atomic slots, and the refill thread sleeps on a futex word the hook bumps.
struct Pool {
  std::atomic<void*> slots[kMaxReady] = {};  // a faulted-in chunk, or null
  int target = 0;                            // slots in use; set before the thread starts
  std::atomic<uint32_t> wake{0};             // futex word: bumped when a chunk is taken
  std::atomic<bool> stop{false};
  std::atomic<bool> refilling{false};  // the refill thread runs (a take wakes it only then)
  std::atomic<uintptr_t> next{0};      // the reservation's first chunk not handed out yet
  uintptr_t start = 0;                 // the reservation; set before the first arena exists
  uintptr_t end = 0;
  bool huge = false;  // set before the first arena exists
  std::thread thread;
  std::atomic<bool> active{false};
  std::atomic<uint64_t> prefaulted{0};
  std::atomic<uint64_t> inline_chunks{0};
};

Pool& ThePool() {
  static auto* pool = new Pool();
  return *pool;
}

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// An anonymous mapping of `size` bytes aligned to `alignment` (a power of two), or null.
void* MapAligned(size_t size, size_t alignment, int extra_flags = 0) {
  alignment = std::max(alignment, PageSize());
  size_t span = size + alignment - PageSize();
  void* raw =
      mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + alignment - 1) & ~(uintptr_t{alignment} - 1);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + span;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size);
  return reinterpret_cast<void*>(aligned);
}

// The next chunk of the reservation, not faulted in; null once it is used up.
void* Carve() {
  Pool& pool = ThePool();
  uintptr_t chunk = pool.next.fetch_add(kChunk, std::memory_order_relaxed);
  if (chunk + kChunk > pool.end) return nullptr;
  return reinterpret_cast<void*>(chunk);
}

void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t seen) {
  timespec timeout{1, 0};  // bounded: the loop looks at `stop` at least once a second
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, seen, &timeout, nullptr,
          0);
}

void* TakeReady() {
  Pool& pool = ThePool();
  for (int i = 0; i < pool.target; ++i) {
    if (pool.slots[i].load(std::memory_order_relaxed) == nullptr) continue;
    void* chunk = pool.slots[i].exchange(nullptr, std::memory_order_acquire);
    if (chunk == nullptr) continue;
    pool.wake.fetch_add(1, std::memory_order_release);
    if (pool.refilling.load(std::memory_order_relaxed)) FutexWake(&pool.wake);
    return chunk;
  }
  return nullptr;
}

void* HookAlloc(ExtentHooks* /*hooks*/, void* new_addr, size_t size, size_t alignment, bool* zero,
                bool* commit, unsigned /*arena*/) {
  // With opt.retain (checked at start) jemalloc never asks for a given address; refusing is a
  // legal failure anyway.
  if (new_addr != nullptr) return nullptr;
  Pool& pool = ThePool();
  void* out = nullptr;
  // An arena's growth: 2 MiB (retain_grow_limit) at page alignment. jemalloc's own metadata
  // blocks ask for huge-page alignment and take the other path.
  if (size == kChunk && alignment <= PageSize()) {
    out = TakeReady();
    if (out != nullptr) {
      pool.prefaulted.fetch_add(1, std::memory_order_relaxed);
    } else {
      // Pool empty: the arena's thread takes the faults as it writes, as without the pool.
      pool.inline_chunks.fetch_add(1, std::memory_order_relaxed);
      out = Carve();
      if (out == nullptr) {
        out = MapAligned(kChunk, kChunk);
        if (out != nullptr && pool.huge) madvise(out, kChunk, MADV_HUGEPAGE);
      }
    }
  } else {
    // jemalloc's metadata blocks (huge-page alignment; jemalloc advises them itself under
    // metadata_thp:auto), and growth beyond a chunk for blocks of 2 MiB and more, advised as
    // jemalloc's own hooks would under thp:always.
    out = MapAligned(size, alignment);
    if (out != nullptr && pool.huge && alignment <= PageSize()) madvise(out, size, MADV_HUGEPAGE);
  }
  if (out == nullptr) return nullptr;
  *zero = true;  // fresh anonymous pages, or pages only ever written with zeros
  *commit = true;
  return out;
}

void HookDestroy(ExtentHooks* /*hooks*/, void* addr, size_t size, bool /*committed*/,
                 unsigned /*arena*/) {
  munmap(addr, size);
}

bool HookCommit(ExtentHooks* /*hooks*/, void* /*addr*/, size_t /*size*/, size_t /*offset*/,
                size_t /*length*/, unsigned /*arena*/) {
  return false;  // the memory is always readable and writable
}

bool Advise(void* addr, size_t offset, size_t length, int advice) {
  return madvise(static_cast<char*>(addr) + offset, length, advice) != 0;
}

bool HookPurgeLazy(ExtentHooks* /*hooks*/, void* addr, size_t /*size*/, size_t offset,
                   size_t length, unsigned /*arena*/) {
  return Advise(addr, offset, length, MADV_FREE);
}

bool HookPurgeForced(ExtentHooks* /*hooks*/, void* addr, size_t /*size*/, size_t offset,
                     size_t length, unsigned /*arena*/) {
  return Advise(addr, offset, length, MADV_DONTNEED);
}

bool HookSplit(ExtentHooks* /*hooks*/, void* /*addr*/, size_t /*size*/, size_t /*a*/, size_t /*b*/,
               bool /*committed*/, unsigned /*arena*/) {
  return false;  // plain anonymous memory splits anywhere
}

bool HookMerge(ExtentHooks* /*hooks*/, void* /*a*/, size_t /*a_size*/, void* /*b*/,
               size_t /*b_size*/, bool /*committed*/, unsigned /*arena*/) {
  return false;  // and merges back (jemalloc only merges pieces of one hook allocation)
}

// No dalloc and no decommit: jemalloc keeps what an arena frees mapped (opt.retain) and gives
// its pages back to the kernel with the purge hooks.
ExtentHooks hooks = {HookAlloc,     nullptr,         HookDestroy, HookCommit, nullptr,
                     HookPurgeLazy, HookPurgeForced, HookSplit,   HookMerge};

// Faults [p, p + kChunk) in by writing a zero to each 4 KiB page (with huge pages the first write
// brings the whole 2 MiB). From Linux 6.4 a page fault takes only the faulting range's lock
// (PerRangeFaultLocks), so a refill thread set aside mid-fault holds up nobody's mmap;
// MADV_POPULATE_WRITE would take the whole process's address-space lock (for reading) instead.
void Touch(void* p) {
  auto* bytes = static_cast<volatile char*>(p);
  for (size_t off = 0; off < kChunk; off += PageSize()) bytes[off] = 0;
}

void Refill() {
  pthread_setname_np(pthread_self(), "pushd-prefault");
  // Mostly when nothing else wants a CPU: a waking thread preempts it, and zeroing a huge page
  // yields between its 4 KiB pieces when asked (traced exceptions: see the header). Failing
  // that, the lowest normal priority.
  sched_param param{};
  if (sched_setscheduler(0, SCHED_IDLE, &param) != 0) setpriority(PRIO_PROCESS, 0, 19);
  Pool& pool = ThePool();
  while (!pool.stop.load(std::memory_order_acquire)) {
    uint32_t seen = pool.wake.load(std::memory_order_acquire);
    for (int i = 0; i < pool.target && !pool.stop.load(std::memory_order_relaxed); ++i) {
      if (pool.slots[i].load(std::memory_order_relaxed) != nullptr) continue;
      void* chunk = Carve();
      if (chunk == nullptr) {
        pool.refilling.store(false);
        spdlog::warn(
            "prefaulted heap: its {} MiB of address space are used up; the gRPC queue threads "
            "now fault their new heap memory in themselves",
            (pool.end - pool.start) >> 20);
        return;
      }
      Touch(chunk);
      pool.slots[i].store(chunk, std::memory_order_release);
    }
    FutexWait(&pool.wake, seen);
  }
  pool.refilling.store(false);
}

bool MallctlBool(const char* name) {
  bool value = false;
  size_t size = sizeof(value);
  return mallctl(name, &value, &size, nullptr, 0) == 0 && value;
}

bool JemallocThpAlways() {
  const char* thp = nullptr;
  size_t size = sizeof(thp);
  if (mallctl("opt.thp", static_cast<void*>(&thp), &size, nullptr, 0) != 0 || thp == nullptr) {
    return false;
  }
  return std::strcmp(thp, "always") == 0;
}

// Linux 6.4 and later take a page fault under the faulting range's own lock. Before, a fault held
// the whole process's address-space lock, and the refill thread, set aside in the middle of one,
// would hold up every mmap and munmap, and the faults queued behind them.
bool PerRangeFaultLocks() {
  utsname name{};
  if (uname(&name) != 0) return false;
  int major = 0;
  int minor = 0;
  if (std::sscanf(name.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 4);
}

std::string StartOnce(int ready_chunks, size_t reserve) {
  if (mallctl == nullptr) return "the malloc is not jemalloc";
  // Without opt.retain (MALLOC_CONF=retain:false) arenas grow by exactly what they need, not in
  // chunks, and the pool would go unused.
  if (!MallctlBool("opt.retain")) return "jemalloc's opt.retain is off";
  size_t page = 0;
  size_t size = sizeof(page);
  if (mallctl("arenas.page", &page, &size, nullptr, 0) != 0 || page != PageSize()) {
    return "jemalloc's page size is not the kernel's";
  }
  if (!PerRangeFaultLocks()) return "the kernel is older than 6.4";
  // The reservation is address space only, except where the kernel counts it anyway: with strict
  // overcommit it would be charged in full, and under an address-space limit it would take room
  // the rest of the process needs.
  std::ifstream overcommit("/proc/sys/vm/overcommit_memory");
  int mode = 0;
  if (overcommit >> mode && mode == 2) return "vm.overcommit_memory is 2 (strict)";
  rlimit limit{};
  if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    return "an address-space limit (ulimit -v) is set";
  }
  reserve = (std::max(reserve, kChunk) + kChunk - 1) & ~(kChunk - 1);
  void* reserved = MapAligned(reserve, kChunk, MAP_NORESERVE);
  if (reserved == nullptr) return "the address space could not be reserved";
  Pool& pool = ThePool();
  pool.huge = JemallocThpAlways();
  if (pool.huge) madvise(reserved, reserve, MADV_HUGEPAGE);
  pool.start = reinterpret_cast<uintptr_t>(reserved);
  pool.next.store(pool.start);
  pool.end = pool.start + reserve;
  pool.target = std::clamp(ready_chunks, 1, kMaxReady);
  pool.refilling.store(true);
  pool.thread = std::thread(Refill);
  pool.active.store(true);
  return "";
}

}  // namespace

bool StartPrefaultedHeap(int ready_chunks, size_t reserve_bytes, std::string* why_not) {
  static const std::string* const refused = new std::string(StartOnce(ready_chunks, reserve_bytes));
  if (why_not != nullptr) *why_not = *refused;
  return refused->empty();
}

void StopPrefaultedHeap() {
  Pool& pool = ThePool();
  if (!pool.active.load()) return;
  pool.stop.store(true, std::memory_order_release);
  pool.wake.fetch_add(1, std::memory_order_release);
  FutexWake(&pool.wake);
  if (pool.thread.joinable()) pool.thread.join();
}

void UsePrefaultedHeap() {
  if (!ThePool().active.load()) return;
  unsigned arena = 0;
  size_t size = sizeof(arena);
  ExtentHooks* table = &hooks;
  if (mallctl("arenas.create", &arena, &size, static_cast<void*>(&table), sizeof(table)) != 0) {
    return;
  }
  // Grow the arena one chunk at a time (jemalloc otherwise steps each growth up a size class:
  // 2, 2.5, 3, 3.5, 4 MiB...), so that its growth is what the pool holds. If that cannot be set,
  // the thread keeps its arena (the new one stays unused).
  size_t limit = kChunk;
  std::string name = "arena." + std::to_string(arena) + ".retain_grow_limit";
  if (mallctl(name.c_str(), nullptr, nullptr, &limit, sizeof(limit)) != 0) return;
  mallctl("thread.arena", nullptr, nullptr, &arena, sizeof(arena));
}

PrefaultedHeapStats GetPrefaultedHeapStats() {
  Pool& pool = ThePool();
  PrefaultedHeapStats stats;
  stats.active = pool.active.load();
  stats.chunks_prefaulted = pool.prefaulted.load(std::memory_order_relaxed);
  stats.chunks_inline = pool.inline_chunks.load(std::memory_order_relaxed);
  for (int i = 0; i < pool.target; ++i) {
    if (pool.slots[i].load(std::memory_order_relaxed) != nullptr) ++stats.ready_chunks;
  }
  return stats;
}

}  // namespace push
