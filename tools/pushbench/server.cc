#include "tools/pushbench/server.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/testing/pushd_launcher.h"
#include "tools/pushbench/stats.h"

namespace pushbench {
namespace {

std::atomic<pid_t> child_pid{-1};

}  // namespace

pid_t ChildServerPid() { return child_pid.load(); }

ServerProcess::~ServerProcess() { Stop(); }

bool ServerProcess::Start(const std::string& binary, const std::vector<std::string>& extra_args,
                          std::string* error) {
  std::vector<std::string> args = {"--log_level=warn", "--drain_timeout=5s"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  push::testing::LaunchOptions options;
  options.die_with_parent = true;  // never outlive pushbench, even when it is killed
  push::testing::LaunchedPushd launched = push::testing::LaunchPushd(binary, args, options);
  if (launched.pid < 0) {
    *error = launched.error;
    return false;
  }
  pid_ = launched.pid;
  child_pid = launched.pid;
  grpc_port_ = launched.grpc_port;
  ws_port_ = launched.ws_port;
  if (grpc_port_ == 0 || ws_port_ == 0) {
    *error = "pushd did not print its ready line within 20 s; stdout was: '" +
             launched.stdout_text + "'";
    Stop(2000);
    return false;
  }
  return true;
}

void ServerProcess::Stop(int timeout_ms) {
  if (pid_ <= 0) return;
  push::testing::StopProcess(pid_, timeout_ms);
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
