#pragma once

// Starting a pushd child process and reading its ready line: the part of the tests'
// PushdProcess that pushbench (tools/pushbench/server.cc) uses too. No GTest and no gRPC, so
// pushbench can link it without the test suite (CMake target push_launcher, tools/CMakeLists.txt).

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace push::testing {

struct LaunchOptions {
  // The child's whole environment ("NAME=value" strings); unset, it inherits this process's.
  std::optional<std::vector<std::string>> env;
  // When >= 0, becomes the child's stderr (stdout is always the pipe the ready line comes on).
  int stderr_fd = -1;
  // When positive, the child's RLIMIT_NOFILE (soft and hard) before exec.
  int open_files_limit = 0;
  // The child is killed (SIGKILL) when this process dies, however it dies, and starts with no
  // signal blocked.
  bool die_with_parent = false;
  // How long to wait for the ready line.
  std::chrono::milliseconds ready_timeout{20000};
};

struct LaunchedPushd {
  pid_t pid = -1;  // -1: no process was started (see error)
  // The line "pushd ready grpc_port=P ws_port=Q" came and was read (a --role=edge process has
  // no gRPC port, --role=api no WebSocket port: 0).
  bool ready = false;
  int grpc_port = 0;
  int ws_port = 0;
  std::string stdout_text;  // what pushd wrote to stdout up to the ready line (or until it gave up)
  std::string error;        // why no process was started
};

// Runs `binary` with --grpc_listen and --ws_listen on 127.0.0.1:0 followed by `args` (later
// flags win), its stdout on a pipe, and reads that pipe until the ready line, the child's exit
// or options.ready_timeout. The child keeps running either way: the caller stops it (StopProcess).
LaunchedPushd LaunchPushd(const std::string& binary, const std::vector<std::string>& args,
                          const LaunchOptions& options = {});

// Waits at most `timeout_ms` for the child `pid` to exit and reaps it. Returns its exit status
// (128 + the signal's number when a signal ended it), kStillRunning on timeout, kNotAChild when
// `pid` is no (longer a) child of this process.
inline constexpr int kStillRunning = -1;
inline constexpr int kNotAChild = -2;
int WaitForExit(pid_t pid, int timeout_ms);

// SIGTERM, then SIGKILL when the child has not exited within `timeout_ms`; reaps it. Returns the
// exit status, as WaitForExit (after a SIGKILL, 128 + 9).
int StopProcess(pid_t pid, int timeout_ms);

// execv's argv for `binary` and `args`: pointers into the strings, null-terminated.
std::vector<char*> ExecArgv(const std::string& binary, const std::vector<std::string>& args);

}  // namespace push::testing
