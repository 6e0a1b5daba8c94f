#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace pushbench {

// A pushd that pushbench starts itself: loopback, ports chosen by the kernel, read back from its
// "pushd ready grpc_port=P ws_port=Q" line. Killed when pushbench exits, however it exits.
// Started with the tests' launcher (tests/testing/pushd_launcher.h).
class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts `binary` with loopback listeners on port 0 and `extra_args` (later flags win). Waits
  // up to 20 s for the ready line; on failure returns false and says why in `error`.
  bool Start(const std::string& binary, const std::vector<std::string>& extra_args,
             std::string* error);
  // SIGTERM, then SIGKILL if it has not exited within `timeout_ms`.
  void Stop(int timeout_ms = 10000);

  pid_t pid() const { return pid_; }
  int grpc_port() const { return grpc_port_; }
  int ws_port() const { return ws_port_; }

 private:
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int ws_port_ = 0;
};

// The pid of the pushd started by this process (or -1): the watchdog kills it before exiting.
pid_t ChildServerPid();

}  // namespace pushbench
