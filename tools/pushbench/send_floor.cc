// send_floor: the kernel's cost of one small WebSocket-sized write per delivery on this machine.
// N loopback TCP connections; one thread writes `bytes` to each in turn (round robin, one
// sendmsg per message, like pushd's send lane), reader threads sleep in epoll and read
// whatever arrives (like pushbench's clients). Prints the writer thread's CPU per write.
//   send_floor [connections=1000] [bytes=330] [seconds=5] [readers=2] [per_write=1] [gap_us=0]
//              [burst=1]
// per_write > 1 writes that many messages to one connection with one sendmsg (coalescing).
// gap_us > 0 spins (no syscall) gap_us x burst microseconds before every `burst` writes, so that
// the readers go back to sleep between bursts as pushbench's do at a server's pace; the line
// "wall inside sendmsg" then gives the kernel's cost of a write alone (the spin is not in it).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>
#include <vector>

static double ThreadCpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  int bytes = argc > 2 ? atoi(argv[2]) : 330;
  double seconds = argc > 3 ? atof(argv[3]) : 5;
  int readers = argc > 4 ? atoi(argv[4]) : 2;
  int per_write = argc > 5 ? atoi(argv[5]) : 1;
  double gap_us = argc > 6 ? atof(argv[6]) : 0;
  int burst = argc > 7 ? std::max(1, atoi(argv[7])) : 1;
  double in_send = 0;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (sockaddr*)&a, sizeof a) || listen(ls, 4096)) return perror("listen"), 1;
  socklen_t al = sizeof a;
  getsockname(ls, (sockaddr*)&a, &al);
  std::vector<int> tx(n), rx(n);
  for (int i = 0; i < n; ++i) {
    rx[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(rx[i], (sockaddr*)&a, sizeof a)) return perror("connect"), 1;
    tx[i] = accept(ls, nullptr, nullptr);
    int one = 1;
    setsockopt(tx[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(tx[i], F_SETFL, O_NONBLOCK);
  }
  std::atomic<bool> stop{false};
  std::atomic<long> got{0};
  std::vector<std::thread> rt;
  for (int r = 0; r < readers; ++r) {
    rt.emplace_back([&, r] {
      int ep = epoll_create1(0);
      for (int i = r; i < n; i += readers) {
        epoll_event ev{EPOLLIN, {.fd = rx[i]}};
        epoll_ctl(ep, EPOLL_CTL_ADD, rx[i], &ev);
      }
      char buf[65536];
      epoll_event evs[256];
      while (!stop.load()) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int j = 0; j < k; ++j) {
          ssize_t m = read(evs[j].data.fd, buf, sizeof buf);
          if (m > 0) got += m;
        }
      }
      close(ep);
    });
  }
  std::vector<char> msg(bytes, 'x');
  std::vector<iovec> iov(per_write * 2);
  char hdr[4] = {char(0x81), 126, 0, 0};
  for (int k = 0; k < per_write; ++k) {
    iov[2 * k] = {hdr, 4};
    iov[2 * k + 1] = {msg.data(), msg.size()};
  }
  long writes = 0, again = 0;
  double c0 = ThreadCpu();
  auto t0 = std::chrono::steady_clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  for (int i = 0;; i = (i + 1) % n) {
    if ((writes & 1023) == 0 && std::chrono::steady_clock::now() >= end) break;
    msghdr mh{};
    mh.msg_iov = iov.data();
    mh.msg_iovlen = iov.size();
    if (gap_us > 0 && writes % burst == 0) {
      auto spin = std::chrono::steady_clock::now();
      while (std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - spin)
                 .count() < gap_us * burst) {
      }
    }
    auto s0 = std::chrono::steady_clock::now();
    ssize_t sent = sendmsg(tx[i], &mh, MSG_NOSIGNAL);
    in_send += std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    if (sent < 0) {
      if (errno == EAGAIN) {
        ++again;
        std::this_thread::yield();
        continue;
      }
      return perror("sendmsg"), 1;
    }
    ++writes;
  }
  double cpu = ThreadCpu() - c0;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stop = true;
  for (auto& t : rt) t.join();
  std::printf(
      "connections %d, %d B x %d per sendmsg, %d reader threads: %ld writes in %.2f s, "
      "writer CPU %.2f s = %.2f us per write, %.2f us per message (%.0f messages per "
      "writer CPU-s), EAGAIN %ld\n",
      n, bytes, per_write, readers, writes, wall, cpu, cpu / writes * 1e6,
      cpu / writes / per_write * 1e6, writes * per_write / cpu, again);
  std::printf("wall inside sendmsg: %.2f us per write\n", in_send / writes * 1e6);
}
