#pragma once

#include <cstddef>
#include <cstdint>

namespace push {

// Fresh heap memory, faulted in before the threads that carry a push need it.
//
// While the store fills, every push grows the heap by its stored message, and on this kind of VM
// the first write to a fresh 2 MiB huge page costs 4-6 ms of the writing thread (the kernel zeroes
// it, and the host backs each of its 4 KiB pages; BENCHMARKS.md "What the tail is made of"). When
// the thread that takes that fault is the one appending, every push behind it waits: such faults
// were in the bursts holding 39% of the latency scenario's slow deliveries.
//
// When pushd's malloc is jemalloc (services/jemalloc_conf.cc), UsePrefaultedHeap() gives the
// calling thread an arena of its own (extent hooks) whose growth comes in 2 MiB chunks from a
// small pool. pushd calls it on its gRPC completion-queue threads, the ones that validate, store
// and write a push to its sockets (services/async_call.cc); the edge's threads keep jemalloc's
// arenas (binding them too cost 6 MiB more at start for no gain measured in BENCHMARKS.md).
//  - The chunks are carved from one address range set aside at start (8 GiB of address space,
//    MAP_NORESERVE: nothing is committed until touched; less if the kernel refuses that much).
//  - A background thread at SCHED_IDLE priority faults the next chunks in by writing to them, so
//    the page zeroing and the host's faults happen on a thread the scheduler sets aside whenever
//    any other can run (a waking thread preempts it, and the kernel yields between the 4 KiB
//    pieces of a huge page). Chunks change hands through atomic slots: a hook never waits for it.
//  - When the pool is empty (the heap grows faster than an idle CPU refills it), the arena takes
//    the next chunk untouched and its thread takes the faults, as without the pool. Past the
//    reserved range, arenas map their growth themselves.
//  - Memory the arena frees goes back to the kernel on jemalloc's decay, as before (the purge
//    hooks); reused after that, it faults on the thread that reuses it. What stays resident
//    beyond the store: the chunks waiting in the pool, and up to one partly used chunk per arena.
//
// Measured (BENCHMARKS.md, latency scenario, medians of 3): p99 3.6 -> 2.0 ms at the same CPU.
//
// Without jemalloc (the processes of the tests and tools themselves, the sanitizer build's pushd)
// everything here does nothing.
struct PrefaultedHeapStats {
  bool active = false;             // the pool runs and threads draw from it
  uint64_t chunks_prefaulted = 0;  // chunks handed to an arena already faulted in
  uint64_t chunks_inline = 0;      // chunks taken while the pool was empty (faulted on use)
  uint64_t ready_chunks = 0;       // chunks waiting in the pool now
};

// Starts the background thread keeping `ready_chunks` chunks of 2 MiB faulted in (at most 32).
// Returns false, and does nothing, when the process's malloc is not jemalloc. The chunks are
// advised as huge pages when jemalloc's opt.thp is "always" (pushd's default); with huge pages
// off they are faulted in 4 KiB at a time, still off the hot threads. Once per process: later
// calls return what the first returned.
bool StartPrefaultedHeap(int ready_chunks);

// Stops the background thread (chunks already in the pool are still handed out).
void StopPrefaultedHeap();

// Gives the calling thread an arena drawing from the pool. Does nothing unless started.
void UsePrefaultedHeap();

PrefaultedHeapStats GetPrefaultedHeapStats();

}  // namespace push
