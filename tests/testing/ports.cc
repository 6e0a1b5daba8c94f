#include "tests/testing/ports.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>

namespace push::testing {
namespace {

constexpr char kLeaseDir[] = "/tmp/pushd-test-ports";

bool PortFree(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return free;
}

// The first port the kernel hands out to port-0 binds and outgoing connections.
int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  if (in >> low && low > 0) return low;
  return 32768;
}

}  // namespace

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

namespace {

std::string LeasePath(int port) {
  return std::string(kLeaseDir) + "/" + std::to_string(port) + ".lock";
}

// Removes the lock file while still holding its lock, then drops the lock: a process that opened
// the old file meanwhile finds, after its flock, that the path is no longer that file (Take).
void Release(int fd, int port) {
  if (fd < 0) return;
  unlink(LeasePath(port).c_str());
  close(fd);
}

}  // namespace

PortLease::~PortLease() { Release(fd_, port_); }

PortLease::PortLease(PortLease&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), port_(other.port_) {}

PortLease& PortLease::operator=(PortLease&& other) noexcept {
  if (this != &other) {
    Release(fd_, port_);
    fd_ = std::exchange(other.fd_, -1);
    port_ = other.port_;
  }
  return *this;
}

PortLease PortLease::Take(int port) {
  PortLease lease;
  lease.port_ = port;
  mkdir(kLeaseDir, 0777);  // EEXIST is fine
  chmod(kLeaseDir, 01777);
  std::string path = LeasePath(port);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return lease;
  struct stat held {};
  struct stat named {};
  // Locked, and still the file the path names (not one its last holder removed meanwhile).
  if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &held) != 0 ||
      stat(path.c_str(), &named) != 0 || held.st_ino != named.st_ino ||
      held.st_dev != named.st_dev) {
    close(fd);
    return lease;
  }
  lease.fd_ = fd;
  return lease;
}

int LeasedLoopbackPort(std::mt19937& rng, std::vector<PortLease>* leases, int offset,
                       const std::set<int>& avoid) {
  const int low = 12000;
  const int high = EphemeralLow() - 1 - offset;
  for (int attempt = 0; attempt < 500; ++attempt) {
    int port;
    if (high - low >= 1000) {
      port = std::uniform_int_distribution<int>(low, high)(rng);
    } else {
      port = FreeLoopbackPort();
      if (port <= 0 || port + offset > 65535) continue;
    }
    if (avoid.count(port) || (offset > 0 && avoid.count(port + offset))) continue;
    PortLease first = PortLease::Take(port);
    if (!first.held() || !PortFree(port)) continue;
    PortLease second;
    if (offset > 0) {
      second = PortLease::Take(port + offset);
      if (!second.held() || !PortFree(port + offset)) continue;
    }
    leases->push_back(std::move(first));
    if (second.held()) leases->push_back(std::move(second));
    return port;
  }
  return 0;
}

}  // namespace push::testing
