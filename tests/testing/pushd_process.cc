#include "tests/testing/pushd_process.h"

#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "gtest/gtest.h"
#include "tests/testing/pushd_launcher.h"

extern char** environ;

namespace push::testing {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MillisLeft(Clock::time_point deadline) {
  return std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
}

// In the sanitizer build (PUSHD_SANITIZE=ON) pushd exits with PUSHD_SANITIZER_EXIT_CODE after an
// AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report (services/
// sanitizer_options.cc), whatever the test expected of it.
void ExpectNoSanitizerReport(int exit_status, const std::string& where) {
#ifdef PUSHD_SANITIZER_EXIT_CODE
  EXPECT_NE(exit_status, PUSHD_SANITIZER_EXIT_CODE)
      << "pushd exited with the sanitizer exit status: a sanitizer found a bug; its report is in "
      << where;
#endif
}

}  // namespace

std::string PushdBinary() { return PUSHD_BINARY; }
std::string PushctlBinary() { return PUSHCTL_BINARY; }

PushdProcess::PushdProcess(std::vector<std::string> args, PushdOptions options) {
  std::vector<std::string> full = {"--drain_timeout=5s"};
  if (!options.pushd_env) full.push_back("--node_id=test-node");
  full.insert(full.end(), args.begin(), args.end());
  LaunchOptions launch;
  launch.open_files_limit = options.open_files_limit;
  if (options.pushd_env) {
    launch.env.emplace();
    for (char** e = environ; e && *e; ++e) {
      if (std::strncmp(*e, "PUSHD_", 6) != 0) launch.env->emplace_back(*e);
    }
    launch.env->insert(launch.env->end(), options.pushd_env->begin(), options.pushd_env->end());
  }
  int err = -1;
  if (options.capture_stderr) {
    std::string path = ::testing::TempDir() + "/pushd_stderr_XXXXXX";
    err = mkostemp(path.data(), O_CLOEXEC);
    if (err < 0) {
      ADD_FAILURE() << "mkostemp: " << strerror(errno);
      return;
    }
    stderr_path_ = path;
    launch.stderr_fd = err;
  }
  LaunchedPushd launched = LaunchPushd(PushdBinary(), full, launch);
  if (err >= 0) close(err);
  if (launched.pid < 0) {
    ADD_FAILURE() << launched.error;
    return;
  }
  pid_ = launched.pid;
  ready_ = launched.ready;
  grpc_port_ = launched.grpc_port;
  ws_port_ = launched.ws_port;
  if (!ready_) {
    ADD_FAILURE() << "pushd did not become ready; stdout: " << launched.stdout_text;
  }
}

PushdProcess::~PushdProcess() {
  if (pid_ > 0 && exit_status_ < 0) Exited(StopProcess(pid_, 15000));
  if (!stderr_path_.empty()) unlink(stderr_path_.c_str());
}

std::string PushdProcess::Stderr() const {
  std::string out;
  if (stderr_path_.empty()) return out;
  int fd = open(stderr_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char chunk[4096];
  ssize_t n;
  while ((n = read(fd, chunk, sizeof(chunk))) > 0) out.append(chunk, static_cast<size_t>(n));
  close(fd);
  return out;
}

std::unique_ptr<v1::PushService::Stub> PushdProcess::Stub() const {
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_port_),
                                     grpc::InsecureChannelCredentials());
  return v1::PushService::NewStub(channel);
}

void PushdProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int PushdProcess::Wait(int timeout_ms) {
  if (exit_status_ >= 0) return exit_status_;
  return Exited(WaitForExit(pid_, timeout_ms));
}

int PushdProcess::Exited(int status) {
  if (status < 0) return -1;
  exit_status_ = status;
  // Captured stderr is not on the test's output: show it with the failure.
  std::string err = Stderr();
  ExpectNoSanitizerReport(status, err.empty() ? "pushd's stderr, above" : "its stderr:\n" + err);
  return status;
}

int PushdProcess::Terminate(int timeout_ms) {
  if (exit_status_ >= 0) return exit_status_;
  Signal(SIGTERM);
  return Wait(timeout_ms);
}

void ReadOutputs(int out_fd, int err_fd, int timeout_ms,
                 const std::function<void(int stream, const char* data, size_t size)>& sink) {
  const bool bounded = timeout_ms >= 0;
  auto deadline = Clock::now() + std::chrono::milliseconds(bounded ? timeout_ms : 0);
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0 && (!bounded || Clock::now() < deadline)) {
    if (poll(fds, 2, bounded ? static_cast<int>(MillisLeft(deadline)) : -1) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char chunk[4096];
      ssize_t n = read(fds[i].fd, chunk, sizeof(chunk));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        sink(i, chunk, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
}

RunResult RunCommand(const std::string& binary, const std::vector<std::string>& args,
                     const std::vector<std::string>& env, int timeout_ms) {
  RunResult result;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return result;
  std::vector<char*> argv = ExecArgv(binary, args);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  ReadOutputs(out[0], err[0], timeout_ms, [&](int stream, const char* data, size_t size) {
    (stream == 0 ? result.out : result.err).append(data, size);
  });
  result.exit_status = WaitForExit(pid, static_cast<int>(MillisLeft(deadline)) + 100);
  if (result.exit_status < 0) {
    result.exit_status = -1;
    if (pid > 0) {
      kill(pid, SIGKILL);
      WaitForExit(pid, 5000);
    }
  }
  if (binary == PushdBinary())
    ExpectNoSanitizerReport(result.exit_status, "its stderr:\n" + result.err);
  return result;
}

}  // namespace push::testing
