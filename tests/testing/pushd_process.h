#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "push/v1/push.grpc.pb.h"

namespace push::testing {

struct PushdOptions {
  // Sends pushd's stderr (its log) to a file that Stderr() reads, instead of the test's stderr.
  bool capture_stderr = false;
  // When positive, the child's RLIMIT_NOFILE (soft and hard) before exec.
  int open_files_limit = 0;
  // When set, pushd is configured through its environment: it gets the test's environment less
  // any PUSHD_* variables, plus these ("PUSHD_NODE_ID=a"), and no --node_id of the harness's.
  std::optional<std::vector<std::string>> pushd_env;
};

// A real `pushd` child process on loopback with ephemeral ports. Stopped (SIGTERM, then SIGKILL)
// when destroyed, so no server outlives its test. In the sanitizer build, a pushd that exits
// after a sanitizer report fails the test (Wait, Terminate and the destructor all check).
class PushdProcess {
 public:
  // Starts pushd with --grpc_listen/--ws_listen on 127.0.0.1:0, a short drain timeout, a node id
  // and `args` (tests/testing/pushd_launcher.h); waits for its "pushd ready" line. Fails the
  // current test on error.
  explicit PushdProcess(std::vector<std::string> args = {}, PushdOptions options = {});
  ~PushdProcess();

  // The ready line came (a --role=edge process has no gRPC port, --role=api no WebSocket port).
  bool started() const { return pid_ > 0 && ready_; }
  int grpc_port() const { return grpc_port_; }
  int ws_port() const { return ws_port_; }
  pid_t pid() const { return pid_; }

  std::unique_ptr<v1::PushService::Stub> Stub() const;

  // What pushd has written to stderr so far (with capture_stderr; empty otherwise).
  std::string Stderr() const;

  // Sends SIGTERM and waits (at most `timeout_ms`) for the exit status; -1 on timeout.
  int Terminate(int timeout_ms = 30000);
  // Sends `sig` without waiting.
  void Signal(int sig);
  // Waits for exit; returns the exit status, or -1 if it did not exit within `timeout_ms`.
  int Wait(int timeout_ms);

 private:
  // Takes a status from WaitForExit or StopProcess; returns it, or -1 while pushd runs.
  int Exited(int status);

  pid_t pid_ = -1;
  bool ready_ = false;
  int grpc_port_ = 0;
  int ws_port_ = 0;
  int exit_status_ = -1;
  std::string stderr_path_;
};

// Runs `binary` with `args` to completion (bounded by `timeout_ms`); returns the exit status
// and what it wrote to stderr and stdout.
struct RunResult {
  int exit_status = -1;
  std::string out;
  std::string err;
};
RunResult RunCommand(const std::string& binary, const std::vector<std::string>& args,
                     const std::vector<std::string>& env = {}, int timeout_ms = 30000);

// Reads a child's stdout (`out_fd`) and stderr (`err_fd`) until both end or `timeout_ms` passes
// (-1: no bound), handing each chunk to `sink` (0: stdout, 1: stderr); closes both.
void ReadOutputs(int out_fd, int err_fd, int timeout_ms,
                 const std::function<void(int stream, const char* data, size_t size)>& sink);

std::string PushdBinary();
std::string PushctlBinary();

}  // namespace push::testing
