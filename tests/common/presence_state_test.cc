// The presence rules (PresenceState), the watchers' Feed and MemoryPresence, as plain classes
// with a fake clock.

#include <string>
#include <vector>

#include "common/delivery/presence.h"
#include "gtest/gtest.h"
#include "tests/testing/fakes.h"

namespace push::presence {
namespace {

using push::testing::FakeClock;

ConnectionInfo Conn(std::string user, std::string id, std::string device = "") {
  ConnectionInfo c;
  c.user_id = std::move(user);
  c.connection_id = std::move(id);
  c.device_id = std::move(device);
  return c;
}

// "KIND user" per event, e.g. "CONNECTED ann".
std::vector<std::string> Names(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) {
    static const char* kNames[] = {"", "CONNECTED", "DISCONNECTED", "ONLINE", "OFFLINE", "RESYNC"};
    out.push_back(std::string(kNames[static_cast<int>(e.kind)]) + " " + e.user_id);
  }
  return out;
}

using Strings = std::vector<std::string>;

TEST(PresenceStateTest, FirstConnectionIsOnlineAndLastOneIsOfflineAfterTheDelay) {
  PresenceState s(absl::Seconds(5));
  absl::Time t = absl::FromUnixSeconds(1000);
  std::vector<Event> out;
  s.Connected("n1", Conn("ann", "c1", "phone"), t, &out);
  s.Connected("n1", Conn("ann", "c2"), t, &out);
  EXPECT_EQ(Names(out), (Strings{"CONNECTED ann", "ONLINE ann", "CONNECTED ann"}));
  EXPECT_EQ(out[0].device_id, "phone");
  EXPECT_EQ(out[0].node_id, "n1");
  out.clear();
  s.Disconnected("n1", "c1", "client closed", t, &out);
  s.Disconnected("n1", "c2", "pong timeout", t + absl::Seconds(1), &out);
  EXPECT_EQ(Names(out), (Strings{"DISCONNECTED ann", "DISCONNECTED ann"}));
  EXPECT_EQ(out[0].device_id, "phone");
  EXPECT_EQ(out[1].reason, "pong timeout");
  out.clear();
  s.Expire(t + absl::Seconds(5.9), &out);
  EXPECT_TRUE(out.empty()) << "the delay runs from the last connection's end";
  EXPECT_EQ(s.NextDue(), t + absl::Seconds(6));
  s.Expire(t + absl::Seconds(6), &out);
  EXPECT_EQ(Names(out), (Strings{"OFFLINE ann"}));
  EXPECT_EQ(out[0].node_id, "n1");
  EXPECT_FALSE(s.online("ann"));
  EXPECT_EQ(s.NextDue(), absl::InfiniteFuture());
}

TEST(PresenceStateTest, FlappingInsideTheDelayIsNeitherOfflineNorOnline) {
  PresenceState s(absl::Seconds(5));
  absl::Time t = absl::FromUnixSeconds(1000);
  std::vector<Event> out;
  s.Connected("n1", Conn("bob", "c1"), t, &out);
  out.clear();
  // Ten reloads, one a second: each closes the only tab and opens another.
  for (int i = 0; i < 10; ++i) {
    t += absl::Seconds(1);
    s.Disconnected("n1", "c" + std::to_string(i + 1), "client closed", t, &out);
    s.Connected("n1", Conn("bob", "c" + std::to_string(i + 2)), t + absl::Milliseconds(200), &out);
    s.Expire(t + absl::Milliseconds(500), &out);
  }
  for (const std::string& name : Names(out)) {
    EXPECT_TRUE(name == "DISCONNECTED bob" || name == "CONNECTED bob") << name;
  }
  EXPECT_EQ(out.size(), 20u);
  // Entries of the old departures fall due later and must be skipped.
  out.clear();
  s.Expire(t + absl::Seconds(60), &out);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(s.online("bob"));
  // A leave, a return and a second leave: OFFLINE is due 5 s after the second one only.
  s.Disconnected("n1", "c11", "client closed", t, &out);
  s.Connected("n1", Conn("bob", "c12"), t + absl::Seconds(2), &out);
  s.Disconnected("n1", "c12", "client closed", t + absl::Seconds(3), &out);
  out.clear();
  s.Expire(t + absl::Seconds(7), &out);
  EXPECT_TRUE(out.empty()) << "the first leave's entry is stale";
  s.Expire(t + absl::Seconds(8), &out);
  EXPECT_EQ(Names(out), (Strings{"OFFLINE bob"}));
}

TEST(PresenceStateTest, ALostNodeDisconnectsItsConnectionsAndUsersOnlyThereGoOffline) {
  PresenceState s(absl::Seconds(5));
  absl::Time t = absl::FromUnixSeconds(1000);
  std::vector<Event> out;
  s.Connected("n1", Conn("cal", "a"), t, &out);
  s.Connected("n1", Conn("dee", "b"), t, &out);
  s.Connected("n2", Conn("dee", "c"), t, &out);  // dee has a tab on another node too
  out.clear();
  s.NodeLost("n1", t + absl::Seconds(20), &out);
  ASSERT_EQ(Names(out), (Strings{"DISCONNECTED cal", "DISCONNECTED dee"}));
  EXPECT_EQ(out[0].reason, kNodeLost);
  EXPECT_EQ(out[0].node_id, "n1");
  out.clear();
  // The node's own late report of a close (it was not dead after all) changes nothing.
  s.Disconnected("n1", "a", "client closed", t + absl::Seconds(21), &out);
  EXPECT_TRUE(out.empty());
  s.Expire(t + absl::Seconds(25), &out);
  EXPECT_EQ(Names(out), (Strings{"OFFLINE cal"}));
  EXPECT_TRUE(s.online("dee"));
  EXPECT_EQ(s.connections(), 1u);
}

TEST(PresenceStateTest, AConnectionReportedTwiceCountsOnce) {
  PresenceState s(absl::Seconds(1));
  absl::Time t = absl::FromUnixSeconds(1000);
  std::vector<Event> out;
  s.Connected("n1", Conn("eve", "a"), t, &out);
  s.Connected("n1", Conn("eve", "a"), t, &out);
  s.Disconnected("n1", "a", "client closed", t, &out);
  s.Disconnected("n1", "a", "client closed", t, &out);
  s.Expire(t + absl::Seconds(1), &out);
  EXPECT_EQ(Names(out),
            (Strings{"CONNECTED eve", "ONLINE eve", "DISCONNECTED eve", "OFFLINE eve"}));
}

class CountingWaiter final : public Feed::Waiter {
 public:
  void Wake() override { ++wakes; }
  int wakes = 0;
};

Event At(uint64_t cursor, absl::Time at) {
  Event e;
  e.cursor = cursor;
  e.at = at;
  e.user_id = "u" + std::to_string(cursor);
  return e;
}

TEST(FeedTest, ReadsWaitsAndBounds) {
  FakeClock clock;
  Feed::Options o;
  o.capacity = 3;
  o.retention = absl::Seconds(10);
  o.clock = &clock;
  Feed feed(o);
  CountingWaiter w;
  EXPECT_TRUE(feed.Wait(&w, 0));
  feed.Publish({At(1, clock.Now()), At(2, clock.Now())});
  EXPECT_EQ(w.wakes, 1);
  EXPECT_FALSE(feed.Wait(&w, 1)) << "an event past 1 is there";
  std::vector<Event> out;
  EXPECT_EQ(feed.Take(0, 10, &out), Feed::Read::kOk);
  EXPECT_EQ(out.size(), 2u);
  out.clear();
  EXPECT_EQ(feed.Take(3, 10, &out), Feed::Read::kAhead);
  // Past the capacity the oldest go: a read before them must ask the log.
  feed.Publish({At(3, clock.Now()), At(4, clock.Now())});
  EXPECT_EQ(feed.first(), 2u);
  EXPECT_EQ(feed.Take(0, 10, &out), Feed::Read::kBefore);
  EXPECT_EQ(feed.Take(1, 1, &out), Feed::Read::kOk);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].cursor, 2u);
  // Past the retention too.
  clock.Advance(absl::Seconds(11));
  feed.Publish({At(5, clock.Now())});
  feed.Trim();
  EXPECT_EQ(feed.first(), 5u);
  // A cancelled waiter is not woken; a gap in cursors starts the feed over.
  EXPECT_TRUE(feed.Wait(&w, 5));
  feed.Cancel(&w);
  feed.Publish({At(9, clock.Now())});
  EXPECT_EQ(w.wakes, 1);
  EXPECT_EQ(feed.first(), 9u);
  EXPECT_EQ(feed.last(), 9u);
}

TEST(MemoryPresenceTest, NumbersEventsAndExpiresOnTick) {
  FakeClock clock;
  Feed::Options o;
  o.clock = &clock;
  Feed feed(o);
  MemoryPresence presence("n1", absl::Seconds(2), &feed, &clock);
  push::testing::RecordingConnection c(Conn("fay", "c1"), 0, 0);
  presence.OnAdd(c);
  presence.OnRemove(c, "deleted");
  presence.Tick();
  EXPECT_EQ(feed.last(), 3u);
  clock.Advance(absl::Seconds(2));
  presence.Tick();
  std::vector<Event> out;
  ASSERT_EQ(feed.Take(0, 10, &out), Feed::Read::kOk);
  EXPECT_EQ(Names(out),
            (Strings{"CONNECTED fay", "ONLINE fay", "DISCONNECTED fay", "OFFLINE fay"}));
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].cursor, i + 1);
  EXPECT_EQ(out[2].reason, "deleted");
}

}  // namespace
}  // namespace push::presence
