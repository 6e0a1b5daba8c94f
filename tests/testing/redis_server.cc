#include "tests/testing/redis_server.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/redis/redis_client.h"
#include "gtest/gtest.h"
#include "tests/testing/ports.h"

namespace push::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string Render(const redis::Value& v) {
  switch (v.type) {
    case redis::Value::Type::kNil:
      return "(nil)";
    case redis::Value::Type::kInteger:
      return std::to_string(v.integer);
    case redis::Value::Type::kArray: {
      std::string out;
      for (size_t i = 0; i < v.elements.size(); ++i) {
        if (i > 0) out.push_back(' ');
        out += Render(v.elements[i]);
      }
      return out;
    }
    default:
      return v.str;
  }
}

}  // namespace

bool RedisServer::Available() { return system("command -v redis-server >/dev/null 2>&1") == 0; }

RedisServer::RedisServer() {
  char tmpl[] = "/tmp/pushd-redis-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  // The port is leased against the other test processes; a process outside the tests may still
  // take it between the probe and the bind: try a few.
  std::random_device seed;
  std::mt19937 rng(seed());
  for (int attempt = 0; attempt < 5 && pid_ <= 0; ++attempt) {
    leases_.clear();
    port_ = LeasedLoopbackPort(rng, &leases_);
    if (port_ == 0) break;
    if (Launch() && WaitReady(10000)) break;
    Stop();
  }
  if (pid_ <= 0) ADD_FAILURE() << "redis-server did not start";
}

RedisServer::~RedisServer() {
  Stop();
  std::error_code ignored;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
}

bool RedisServer::Launch() {
  std::string port = std::to_string(port_);
  pid_ = fork();
  if (pid_ == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, STDOUT_FILENO);
    // Quiet, loopback only, no RDB snapshots; the append-only file survives restarts.
    execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--dir",
           dir_.c_str(), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
           "--daemonize", "no", "--loglevel", "warning", "--logfile", "",
           static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid_ > 0;
}

bool RedisServer::WaitReady(int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    if (Command({"PING"}) == "PONG") {
      // Ours, not a server someone else started on the port in the meantime.
      return Command({"INFO", "server"}).find("process_id:" + std::to_string(pid_) + "\r") !=
             std::string::npos;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void RedisServer::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);  // a stopped server cannot act on SIGTERM
  kill(pid_, SIGTERM);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  int status;
  while (waitpid(pid_, &status, WNOHANG) != pid_) {
    if (Clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
}

void RedisServer::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool RedisServer::Start() {
  if (pid_ > 0) return true;
  password_.clear();  // requirepass was set at runtime: the restarted server has none
  // The old listening socket may linger for a moment: retry within a bound.
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (Launch() && WaitReady(5000)) return true;
    Stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

bool RedisServer::SetPassword(const std::string& password) {
  if (Command({"CONFIG", "SET", "requirepass", password}) != "OK") return false;
  password_ = password;
  return true;
}

std::string RedisServer::Command(const std::vector<std::string>& argv) {
  redis::Endpoint endpoint{"127.0.0.1", port_};
  endpoint.password = password_;
  absl::StatusOr<redis::Value> v =
      redis::BlockingCommand(endpoint, argv, absl::Seconds(1), absl::Seconds(5));
  if (!v.ok()) return absl::StrCat("ERR ", v.status().message());
  return Render(*v);
}

}  // namespace push::testing
