#include "tests/testing/pushd_process.h"

#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "gtest/gtest.h"

namespace push::testing {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MillisLeft(Clock::time_point deadline) {
  return std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
}

std::vector<char*> Argv(const std::string& binary, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  return argv;
}

int WaitPid(pid_t pid, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0 || Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
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
  std::vector<std::string> full = {"--grpc_listen=127.0.0.1:0", "--ws_listen=127.0.0.1:0",
                                   "--drain_timeout=5s", "--node_id=test-node"};
  full.insert(full.end(), args.begin(), args.end());
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << strerror(errno);
    return;
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
  }
  std::string binary = PushdBinary();
  std::vector<char*> argv = Argv(binary, full);
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    if (err >= 0) dup2(err, STDERR_FILENO);
    if (options.open_files_limit > 0) {
      rlimit limit{static_cast<rlim_t>(options.open_files_limit),
                   static_cast<rlim_t>(options.open_files_limit)};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(126);
    }
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  if (err >= 0) close(err);
  // Read stdout until the ready line (or exit, or 20 s).
  std::string buffer;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!ready_ && Clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(MillisLeft(deadline))) <= 0) break;
    char chunk[512];
    ssize_t n = read(out[0], chunk, sizeof(chunk));
    if (n <= 0) break;
    buffer.append(chunk, n);
    size_t pos = buffer.find("pushd ready ");
    if (pos != std::string::npos && buffer.find('\n', pos) != std::string::npos) {
      ready_ = std::sscanf(buffer.c_str() + pos, "pushd ready grpc_port=%d ws_port=%d", &grpc_port_,
                           &ws_port_) == 2;
    }
  }
  close(out[0]);
  if (!ready_) {
    ADD_FAILURE() << "pushd did not become ready; stdout: " << buffer;
  }
}

PushdProcess::~PushdProcess() {
  if (pid_ > 0 && exit_status_ < 0 && Terminate(15000) < 0) {
    kill(pid_, SIGKILL);
    WaitPid(pid_, 5000);
  }
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
  int status = WaitPid(pid_, timeout_ms);
  if (status >= 0) {
    exit_status_ = status;
    // Captured stderr is not on the test's output: show it with the failure.
    std::string err = Stderr();
    ExpectNoSanitizerReport(status, err.empty() ? "pushd's stderr, above" : "its stderr:\n" + err);
  }
  return status;
}

int PushdProcess::Terminate(int timeout_ms) {
  if (exit_status_ >= 0) return exit_status_;
  Signal(SIGTERM);
  return Wait(timeout_ms);
}

RunResult RunCommand(const std::string& binary, const std::vector<std::string>& args,
                     const std::vector<std::string>& env, int timeout_ms) {
  RunResult result;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return result;
  std::vector<char*> argv = Argv(binary, args);
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
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0 && Clock::now() < deadline) {
    if (poll(fds, 2, static_cast<int>(MillisLeft(deadline))) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char chunk[4096];
      ssize_t n = read(fds[i].fd, chunk, sizeof(chunk));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? result.out : result.err).append(chunk, n);
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  result.exit_status = WaitPid(pid, static_cast<int>(MillisLeft(deadline)) + 100);
  if (result.exit_status < 0) {
    kill(pid, SIGKILL);
    WaitPid(pid, 5000);
  }
  if (binary == PushdBinary())
    ExpectNoSanitizerReport(result.exit_status, "its stderr:\n" + result.err);
  return result;
}

}  // namespace push::testing
