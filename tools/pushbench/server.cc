#include "tools/pushbench/server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "tools/pushbench/stats.h"

namespace pushbench {
namespace {

std::atomic<pid_t> child_pid{-1};

// waitpid with a deadline; true once the child has been reaped.
bool WaitExit(pid_t pid, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

pid_t ChildServerPid() { return child_pid.load(); }

ServerProcess::~ServerProcess() { Stop(); }

bool ServerProcess::Start(const std::string& binary, const std::vector<std::string>& extra_args,
                          std::string* error) {
  std::vector<std::string> args = {binary, "--grpc_listen=127.0.0.1:0", "--ws_listen=127.0.0.1:0",
                                   "--log_level=warn", "--drain_timeout=5s"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  if (pid == 0) {
    // Never outlive pushbench, even when it is killed.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(out[1], STDOUT_FILENO);
    // Signals blocked in pushbench would stay blocked in pushd.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(binary.c_str(), argv.data());
    std::fprintf(stderr, "pushbench: cannot run %s: %s\n", binary.c_str(), std::strerror(errno));
    _exit(127);
  }
  close(out[1]);
  pid_ = pid;
  child_pid = pid;

  std::string buffer;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (grpc_port_ == 0 && Clock::now() < deadline) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, std::max(left, 1)) <= 0) break;
    char chunk[512];
    ssize_t n = read(out[0], chunk, sizeof(chunk));
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t pos = buffer.find("pushd ready ");
    if (pos != std::string::npos && buffer.find('\n', pos) != std::string::npos) {
      std::sscanf(buffer.c_str() + pos, "pushd ready grpc_port=%d ws_port=%d", &grpc_port_,
                  &ws_port_);
    }
  }
  close(out[0]);
  if (grpc_port_ == 0 || ws_port_ == 0) {
    *error = "pushd did not print its ready line within 20 s; stdout was: '" + buffer + "'";
    Stop(2000);
    return false;
  }
  return true;
}

void ServerProcess::Stop(int timeout_ms) {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  if (!WaitExit(pid_, timeout_ms)) {
    kill(pid_, SIGKILL);
    WaitExit(pid_, 5000);
  }
  pid_ = -1;
  child_pid = -1;
}

ProcStats ReadProcStats(pid_t pid) {
  ProcStats stats;
  if (pid <= 0) return stats;
  std::string base = "/proc/" + std::to_string(pid);
  std::ifstream status(base + "/status");
  std::string line;
  bool have_rss = false;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0)
      stats.peak_rss_kib = std::strtoll(line.c_str() + 6, nullptr, 10);
    if (line.rfind("VmRSS:", 0) == 0) {
      stats.rss_kib = std::strtoll(line.c_str() + 6, nullptr, 10);
      have_rss = true;
      break;
    }
  }
  std::ifstream stat_file(base + "/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  size_t paren = stat.rfind(')');
  if (!have_rss || paren == std::string::npos) return stats;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  stats.cpu_seconds =
      static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  stats.ok = true;
  return stats;
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

}  // namespace pushbench
