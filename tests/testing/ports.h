#pragma once

#include <random>
#include <set>
#include <vector>

namespace push::testing {

// A loopback TCP port that was free a moment ago (bound to port 0, then released): nothing
// listens on it, though another process may take it before the caller does. 0 on failure.
int FreeLoopbackPort();

// A port this test process holds against every other test process on the machine (ctest runs
// many at once): an exclusive flock on /tmp/pushd-test-ports/PORT.lock, released when the lease
// is destroyed or the process dies. It keeps no socket open: the server the test starts binds it.
class PortLease {
 public:
  PortLease() = default;
  ~PortLease();
  PortLease(PortLease&& other) noexcept;
  PortLease& operator=(PortLease&& other) noexcept;
  PortLease(const PortLease&) = delete;
  PortLease& operator=(const PortLease&) = delete;

  // Takes `port` unless another test process holds it; !held() then.
  static PortLease Take(int port);
  bool held() const { return fd_ >= 0; }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port P for a server that the test starts itself (redis-server): free on 127.0.0.1 now,
// leased (PortLease) together with P + `offset` when `offset` > 0 (a Redis Cluster node's bus
// port), and, when the machine's ephemeral range leaves room, below it, where neither the
// kernel's port-0 binds (pushd under test) nor outgoing connections can take it. Ports in
// `avoid` are not picked. The leases go to `leases`. 0 when no such port was found.
int LeasedLoopbackPort(std::mt19937& rng, std::vector<PortLease>* leases, int offset = 0,
                       const std::set<int>& avoid = {});

}  // namespace push::testing
