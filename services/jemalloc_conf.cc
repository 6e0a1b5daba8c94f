// The pushd executable's malloc settings. pushd links Debian's jemalloc (CMake option
// PUSHD_ALLOCATOR, default jemalloc; the libraries, the tests and the tools keep glibc's malloc),
// chosen by measurement (BENCHMARKS.md "Allocator"):
//  - While the store fills, a push grows the heap by its stored message (about 800 bytes), and
//    the first write to a fresh 4 KiB page is a page fault, about 10 us of CPU on this VM
//    (tools/pushbench/page_touch). glibc's malloc grows its per-thread heaps a page at a time
//    (an mprotect per page) and takes every page's fault; jemalloc maps its memory in large
//    extents, and with thp:always it asks for transparent huge pages on them (madvise), so one
//    fault brings 2 MiB. A unary push run took 31,000 faults and 19,000 mprotect calls with
//    glibc, 2,000 and none with this.
//  - metadata_thp:auto: jemalloc's own metadata goes on huge pages only once it is large.
//  - narenas:8: with huge pages each arena in use holds at least one 2 MiB page (the process
//    started at 40 MiB of RSS here instead of 20), and jemalloc makes 4 arenas per CPU of the
//    host, not of the container: on a 64-core node 256, each of pushd's ~100 threads with its own.
//    8 is jemalloc's own choice on the 2-core machine every figure in BENCHMARKS.md comes from;
//    beyond it, threads share arenas (each keeps its thread cache).
// Where transparent huge pages are off (/sys/kernel/mm/transparent_hugepage/enabled = never), the
// madvise does nothing and pages come 4 KiB at a time, as with glibc. MALLOC_CONF in the
// environment still overrides these (jemalloc reads it after this symbol).
extern "C" {
// Read by jemalloc when it initialises (before main); the executable's definition takes the place
// of the library's weak one.
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables): jemalloc's interface
const char* malloc_conf = "thp:always,metadata_thp:auto,narenas:8";
}
