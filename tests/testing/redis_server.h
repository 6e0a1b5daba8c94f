#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "tests/testing/ports.h"

namespace push::testing {

// A real redis-server child process on 127.0.0.1 with a free port (leased: see ports.h) and its own
// data directory,
// append-only file on (so a restart keeps the data, as production Redis should be configured).
// Stopped when destroyed, so no server outlives its test.
class RedisServer {
 public:
  RedisServer();
  ~RedisServer();

  // Whether redis-server is installed (tests skip with a clear message otherwise).
  static bool Available();

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  // Graceful stop (SIGTERM: the append-only file is flushed), then waits for the exit.
  void Stop();
  // Sends a signal (SIGSTOP/SIGCONT to simulate a hung server).
  void Signal(int sig);
  // Starts again on the same port and data directory; false if it did not come up.
  bool Start();

  // Runs one command synchronously (test checks); the reply rendered as text, arrays as
  // space-separated elements, "(nil)" for nil, "ERR ..." for errors.
  std::string Command(const std::vector<std::string>& argv);
  // From now on clients must AUTH with `password` (CONFIG SET requirepass; a restart by Start()
  // has none again); Command() does. True when Redis took it.
  bool SetPassword(const std::string& password);

 private:
  bool Launch();
  bool WaitReady(int timeout_ms);

  pid_t pid_ = -1;
  int port_ = 0;
  // port_, held against the other test processes for this server's life (restarts included).
  std::vector<PortLease> leases_;
  std::string dir_;
  std::string password_;
};

}  // namespace push::testing
