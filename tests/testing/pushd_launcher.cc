#include "tests/testing/pushd_launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <thread>

namespace push::testing {
namespace {

using Clock = std::chrono::steady_clock;

int MillisLeft(Clock::time_point deadline) {
  return static_cast<int>(std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
}

// write(2) all of `text`, from a forked child (no stdio there: another thread may have held its
// lock at the fork).
void WriteAll(int fd, const char* text, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, text, size);
    if (n <= 0) return;
    text += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace

std::vector<char*> ExecArgv(const std::string& binary, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  return argv;
}

LaunchedPushd LaunchPushd(const std::string& binary, const std::vector<std::string>& args,
                          const LaunchOptions& options) {
  LaunchedPushd out;
  std::vector<std::string> full = {"--grpc_listen=127.0.0.1:0", "--ws_listen=127.0.0.1:0"};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv = ExecArgv(binary, full);
  std::vector<char*> envp;
  if (options.env) {
    for (const auto& e : *options.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  // Said by the child when exec fails, as "<this program>: cannot run <binary>: <reason>".
  std::string cannot_run =
      std::string(program_invocation_short_name) + ": cannot run " + binary + ": ";

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    out.error = std::string("pipe: ") + std::strerror(errno);
    return out;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    out.error = std::string("fork: ") + std::strerror(errno);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return out;
  }
  if (pid == 0) {
    if (options.die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before the prctl
      // Signals blocked in the parent would stay blocked in pushd.
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
    }
    dup2(pipe_fds[1], STDOUT_FILENO);
    if (options.stderr_fd >= 0) dup2(options.stderr_fd, STDERR_FILENO);
    if (options.open_files_limit > 0) {
      rlimit limit{static_cast<rlim_t>(options.open_files_limit),
                   static_cast<rlim_t>(options.open_files_limit)};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(126);
    }
    if (options.env) {
      execve(binary.c_str(), argv.data(), envp.data());
    } else {
      execv(binary.c_str(), argv.data());
    }
    const char* reason = strerrordesc_np(errno);
    WriteAll(STDERR_FILENO, cannot_run.data(), cannot_run.size());
    WriteAll(STDERR_FILENO, reason, std::strlen(reason));
    WriteAll(STDERR_FILENO, "\n", 1);
    _exit(127);
  }
  close(pipe_fds[1]);
  out.pid = pid;

  // Read stdout until the ready line (or exit, or the timeout).
  std::string& buffer = out.stdout_text;
  auto deadline = Clock::now() + options.ready_timeout;
  while (!out.ready && Clock::now() < deadline) {
    pollfd p{pipe_fds[0], POLLIN, 0};
    if (poll(&p, 1, std::max(MillisLeft(deadline), 1)) <= 0) break;
    char chunk[512];
    ssize_t n = read(pipe_fds[0], chunk, sizeof(chunk));
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t pos = buffer.find("pushd ready ");
    if (pos != std::string::npos && buffer.find('\n', pos) != std::string::npos) {
      out.ready = std::sscanf(buffer.c_str() + pos, "pushd ready grpc_port=%d ws_port=%d",
                              &out.grpc_port, &out.ws_port) == 2;
    }
  }
  close(pipe_fds[0]);
  return out;
}

int WaitForExit(pid_t pid, int timeout_ms) {
  if (pid <= 0) return kNotAChild;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return kStillRunning;
    }
    if (r < 0 && errno != EINTR) return kNotAChild;
    if (Clock::now() >= deadline) return kStillRunning;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int StopProcess(pid_t pid, int timeout_ms) {
  if (pid <= 0) return kNotAChild;
  kill(pid, SIGTERM);
  int status = WaitForExit(pid, timeout_ms);
  if (status == kStillRunning) {
    kill(pid, SIGKILL);
    status = WaitForExit(pid, 5000);
  }
  return status;
}

}  // namespace push::testing
