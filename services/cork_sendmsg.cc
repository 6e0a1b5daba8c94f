// pushd's sendmsg: the one libc function the pushd executable defines in place of libc's, so
// that WriteBatch can cork the writes gRPC makes on a completion-queue thread during a burst.
//
// gRPC C++ has no public way to hold back the answers of several unary calls for one socket
// write: each Finish writes its answer to the socket at once, and every write to a sleeping
// caller costs the transmit and the caller's wake-up (half of a push's server CPU here,
// BENCHMARKS.md). While WriteBatch::Corking() (a completion-queue thread running a burst's
// handlers or its answers), the write goes with MSG_MORE, which makes the kernel keep it
// queued, and the socket is reported to the batch, whose Flush at the end of the burst pushes
// every such socket out (setting TCP_NODELAY again). Every other sendmsg in the process (the
// edge's send lane, Asio, gRPC while it polls, any other thread) is libc's call unchanged.
//
// Defined in the executable, this definition is the one every shared library (libgrpc) binds
// to. Processes without it (the unit tests' in-process servers) write at once, as before.
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/base/write_batch.h"

extern "C" ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  if (push::WriteBatch::Corking()) {
    flags |= MSG_MORE;
    push::WriteBatch::Corked(fd);
  }
  return syscall(SYS_sendmsg, fd, msg, flags);
}
