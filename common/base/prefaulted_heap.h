#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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
// arenas (binding them too cost 14 MiB more at start for no gain measured in BENCHMARKS.md).
//  - The chunks are carved from one address range set aside at start (address space only,
//    MAP_NORESERVE: nothing is committed until touched; pushd sets aside twice --max_store_bytes
//    plus --max_queued_bytes, at least 1 GiB). Past it, arenas map their growth themselves.
//  - A background thread at SCHED_IDLE priority faults the next chunks in by writing to them, so
//    the page zeroing and the host's faults happen on a thread the scheduler sets aside when
//    another wakes (a waking thread preempts it, and the kernel yields between the 4 KiB pieces
//    of a huge page). Not always: in traces on this VM a queue thread waited 2.5-5 ms on a CPU
//    where this thread was zeroing a huge page, until another CPU took it over (BENCHMARKS.md,
//    "what the latency tail is made of here"; EEVDF's eligibility is our reading of one such
//    trace). Refilling 4 KiB at a time to avoid that cost more than it saved. Chunks change
//    hands through atomic slots: a hook never waits for it.
//  - When the pool is empty (the heap grows faster than an idle CPU refills it), the arena takes
//    the next chunk untouched and its thread takes the faults, as without the pool.
//  - Memory the arena frees goes back to the kernel on jemalloc's decay, as before (the purge
//    hooks); reused after that, it faults on the thread that reuses it (and khugepaged may fill a
//    partly purged huge page back in, as it could before). What stays resident beyond the
//    store: the chunks waiting in the pool, and up to one partly used chunk per arena.
//  - Off (pushd behaves as before, and says why at start) where it could do harm: kernels before
//    6.4 (a page fault held the whole address-space lock, so a refill thread set aside mid-fault
//    would stall every mmap), strict overcommit (the reservation would be charged in full), an
//    address-space limit (ulimit -v), or jemalloc without opt.retain.
//
// Measured (BENCHMARKS.md, latency scenario, each pair from one sitting): p99 3.21 -> 2.13 ms
// (first version, medians of 3), 3.54 -> 2.23 ms (after the first review) and 3.77 -> 2.33 ms
// (this one, medians of 5), at the same server CPU.
//
// Without jemalloc (the processes of the tests and tools themselves, the sanitizer build's pushd)
// everything here does nothing.
struct PrefaultedHeapStats {
  bool active = false;             // the pool runs and threads draw from it
  uint64_t chunks_prefaulted = 0;  // chunks handed to an arena already faulted in
  uint64_t chunks_inline = 0;      // chunks taken while the pool was empty (faulted on use)
  uint64_t ready_chunks = 0;       // chunks waiting in the pool now
};

// Reserves `reserve_bytes` of address space and starts the background thread keeping
// `ready_chunks` chunks of 2 MiB of it faulted in (at most 32). Returns false, does nothing, and
// says why in `why_not` when the pool cannot run or should not (see above: no jemalloc, no
// opt.retain, kernel before 6.4, strict overcommit, ulimit -v). The chunks are advised as huge
// pages when jemalloc's opt.thp is "always" (pushd's default); with huge pages off they are
// faulted in 4 KiB at a time, still off the hot threads. Once per process: later calls return
// what the first returned.
bool StartPrefaultedHeap(int ready_chunks, size_t reserve_bytes, std::string* why_not = nullptr);

// Stops the background thread (chunks already in the pool are still handed out).
void StopPrefaultedHeap();

// Gives the calling thread an arena drawing from the pool. Does nothing unless started.
void UsePrefaultedHeap();

PrefaultedHeapStats GetPrefaultedHeapStats();

}  // namespace push
