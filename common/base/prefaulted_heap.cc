#include "common/base/prefaulted_heap.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

// jemalloc's interface, when jemalloc is the process's malloc (weak: null otherwise). The hook
// table's layout is jemalloc's extent_hooks_t (jemalloc/jemalloc.h, stable since 5.0); it is
// declared here so that the libraries do not depend on jemalloc's headers.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

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

// Everything here lives as long as the process: jemalloc calls the hooks of an arena until exit.
// The hooks run inside jemalloc (its locks held), so they must not allocate: the pool is a fixed
// array under a pthread mutex.
struct Pool {
  std::mutex mu;
  std::condition_variable refill;
  void* ready[kMaxReady] = {};
  int count = 0;      // guarded by mu
  int target = 0;     // guarded by mu
  bool stop = false;  // guarded by mu
  bool huge = false;  // set before the first arena exists
  std::thread thread;
  std::atomic<bool> active{false};
  std::atomic<uint64_t> prefaulted{0};
  std::atomic<uint64_t> inline_maps{0};
  std::atomic<uint64_t> other_maps{0};
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
void* MapAligned(size_t size, size_t alignment) {
  alignment = std::max(alignment, PageSize());
  size_t span = size + alignment - PageSize();
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + alignment - 1) & ~(uintptr_t{alignment} - 1);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + span;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size);
  void* out = reinterpret_cast<void*>(aligned);
  if (ThePool().huge && size >= kChunk) madvise(out, size, MADV_HUGEPAGE);
  return out;
}

// Faults every page of [p, p + size) in, as a write would.
void Populate(void* p, size_t size) {
  if (madvise(p, size, MADV_POPULATE_WRITE) == 0) return;
  // Before Linux 5.14: one write per page.
  auto* bytes = static_cast<volatile char*>(p);
  for (size_t off = 0; off < size; off += PageSize()) bytes[off] = 0;
}

void* TakeReady() {
  Pool& pool = ThePool();
  void* chunk = nullptr;
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    if (pool.count > 0) chunk = pool.ready[--pool.count];
  }
  pool.refill.notify_one();
  return chunk;
}

void* HookAlloc(ExtentHooks* /*hooks*/, void* new_addr, size_t size, size_t alignment, bool* zero,
                bool* commit, unsigned /*arena*/) {
  if (new_addr != nullptr) return nullptr;  // no growing in place: jemalloc copies instead
  Pool& pool = ThePool();
  void* out = nullptr;
  if (size == kChunk && alignment <= kChunk) {
    out = TakeReady();
    if (out != nullptr) {
      pool.prefaulted.fetch_add(1, std::memory_order_relaxed);
    } else {
      pool.inline_maps.fetch_add(1, std::memory_order_relaxed);
    }
  } else {
    pool.other_maps.fetch_add(1, std::memory_order_relaxed);
  }
  if (out == nullptr) out = MapAligned(size, alignment);
  if (out == nullptr) return nullptr;
  *zero = true;  // fresh anonymous pages, or pages only ever written with zeros
  *commit = true;
  return out;
}

// Declining keeps the range mapped; jemalloc purges it and keeps it for reuse (opt.retain).
bool HookDalloc(ExtentHooks* /*hooks*/, void* /*addr*/, size_t /*size*/, bool /*committed*/,
                unsigned /*arena*/) {
  return true;
}

void HookDestroy(ExtentHooks* /*hooks*/, void* addr, size_t size, bool /*committed*/,
                 unsigned /*arena*/) {
  munmap(addr, size);
}

bool HookCommit(ExtentHooks* /*hooks*/, void* /*addr*/, size_t /*size*/, size_t /*offset*/,
                size_t /*length*/, unsigned /*arena*/) {
  return false;  // the memory is always readable and writable
}

bool HookDecommit(ExtentHooks* /*hooks*/, void* /*addr*/, size_t /*size*/, size_t /*offset*/,
                  size_t /*length*/, unsigned /*arena*/) {
  return true;  // declined: jemalloc purges instead
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
  return false;  // and adjacent ranges merge (Linux does not care which mmap made them)
}

ExtentHooks hooks = {HookAlloc,     HookDalloc,      HookDestroy, HookCommit, HookDecommit,
                     HookPurgeLazy, HookPurgeForced, HookSplit,   HookMerge};

void Refill() {
  pthread_setname_np(pthread_self(), "pushd-prefault");
  // Only when nothing else wants a CPU: zeroing a huge page yields between its 4 KiB pages.
  sched_param param{};
  sched_setscheduler(0, SCHED_IDLE, &param);
  Pool& pool = ThePool();
  std::unique_lock<std::mutex> lock(pool.mu);
  while (true) {
    pool.refill.wait(lock, [&] { return pool.stop || pool.count < pool.target; });
    if (pool.stop) return;
    lock.unlock();
    void* chunk = MapAligned(kChunk, kChunk);
    if (chunk != nullptr) Populate(chunk, kChunk);
    lock.lock();
    if (chunk == nullptr) {
      // Out of address space or memory: try again later rather than spin.
      pool.refill.wait_for(lock, std::chrono::seconds(1), [&] { return pool.stop; });
      continue;
    }
    pool.ready[pool.count++] = chunk;
  }
}

bool JemallocThpAlways() {
  const char* thp = nullptr;
  size_t size = sizeof(thp);
  if (mallctl("opt.thp", static_cast<void*>(&thp), &size, nullptr, 0) != 0 || thp == nullptr) {
    return false;
  }
  return std::strcmp(thp, "always") == 0;
}

bool StartOnce(int ready_chunks) {
  if (mallctl == nullptr) return false;
  Pool& pool = ThePool();
  pool.huge = JemallocThpAlways();
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    pool.target = std::clamp(ready_chunks, 1, kMaxReady);
  }
  pool.thread = std::thread(Refill);
  pool.active.store(true);
  return true;
}

}  // namespace

bool StartPrefaultedHeap(int ready_chunks) {
  static const bool started = StartOnce(ready_chunks);
  return started;
}

void StopPrefaultedHeap() {
  Pool& pool = ThePool();
  if (!pool.active.load()) return;
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    pool.stop = true;
  }
  pool.refill.notify_all();
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
  // Grow the arena one chunk at a time (jemalloc otherwise doubles each growth), so that its
  // growth is what the pool holds.
  size_t limit = kChunk;
  std::string name = "arena." + std::to_string(arena) + ".retain_grow_limit";
  mallctl(name.c_str(), nullptr, nullptr, &limit, sizeof(limit));
  mallctl("thread.arena", nullptr, nullptr, &arena, sizeof(arena));
}

PrefaultedHeapStats GetPrefaultedHeapStats() {
  Pool& pool = ThePool();
  PrefaultedHeapStats stats;
  stats.active = pool.active.load();
  stats.chunks_prefaulted = pool.prefaulted.load(std::memory_order_relaxed);
  stats.chunks_mapped_inline = pool.inline_maps.load(std::memory_order_relaxed);
  stats.other_maps = pool.other_maps.load(std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    stats.ready_chunks = static_cast<uint64_t>(pool.count);
  }
  return stats;
}

}  // namespace push
