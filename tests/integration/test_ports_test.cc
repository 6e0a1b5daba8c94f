// The tests' own port handling (tests/testing/ports.h): a port leased by one test process is not
// handed to another while it is held, and a redis-server started by a test is never mistaken for
// another server that answers on its port. ctest runs many test processes at once; two of them
// once started Redis Cluster nodes on the same port and broke each other's clusters.

#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/ports.h"
#include "tests/testing/redis_server.h"

namespace push::testing {
namespace {

// A child process stands in for another test process (flock is per open file, but a child makes
// the point the way ctest's processes meet).
bool OtherProcessCanTake(int port) {
  pid_t pid = fork();
  if (pid == 0) _exit(PortLease::Take(port).held() ? 0 : 1);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(TestPortsTest, ALeasedPortIsNotHandedToAnotherProcessUntilReleased) {
  std::mt19937 rng(7);
  std::vector<PortLease> leases;
  int port = LeasedLoopbackPort(rng, &leases, /*offset=*/10000);
  ASSERT_GT(port, 0);
  ASSERT_EQ(leases.size(), 2u);  // the port and port + 10000
  EXPECT_EQ(leases[0].port(), port);
  EXPECT_EQ(leases[1].port(), port + 10000);
  EXPECT_FALSE(OtherProcessCanTake(port));
  EXPECT_FALSE(OtherProcessCanTake(port + 10000));
  EXPECT_FALSE(PortLease::Take(port).held());  // nor to this process a second time
  // Another pick in this process avoids both.
  std::vector<PortLease> more;
  for (int i = 0; i < 20; ++i) {
    int other = LeasedLoopbackPort(rng, &more, 10000);
    ASSERT_GT(other, 0);
    EXPECT_NE(other, port);
    EXPECT_NE(other, port + 10000);
    EXPECT_NE(other + 10000, port);
  }
  leases.clear();
  EXPECT_TRUE(OtherProcessCanTake(port));
  EXPECT_TRUE(OtherProcessCanTake(port + 10000));
}

TEST(TestPortsTest, RedisServersOfTheTestsNeverShareAPort) {
  if (!RedisServer::Available()) GTEST_SKIP() << "redis-server is not installed";
  std::vector<std::unique_ptr<RedisServer>> servers;
  std::set<int> ports;
  for (int i = 0; i < 4; ++i) {
    servers.push_back(std::make_unique<RedisServer>());
    ASSERT_TRUE(servers.back()->running());
    EXPECT_TRUE(ports.insert(servers.back()->port()).second);
    EXPECT_FALSE(OtherProcessCanTake(servers.back()->port()));
    EXPECT_EQ(servers.back()->Command({"SET", "owner", std::to_string(i)}), "OK");
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(servers[i]->Command({"GET", "owner"}), std::to_string(i));
  // Stopped and started again, each is still the one its test knows (its data, its port).
  servers[0]->Stop();
  ASSERT_TRUE(servers[0]->Start());
  EXPECT_EQ(servers[0]->Command({"GET", "owner"}), "0");
}

}  // namespace
}  // namespace push::testing
