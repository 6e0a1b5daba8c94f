// The presence Feed packs its events and PresenceState keeps compact records
// (common/delivery/presence.cc): what a watcher reads must be exactly what was published, and the
// rules must make exactly the events they made with plain maps. Both are checked against plain
// models of the same behaviour: a deque of Events for the feed, and the rules as they were written
// with std::string maps for the state.

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/delivery/presence.h"
#include "gtest/gtest.h"
#include "tests/testing/fakes.h"

namespace push::presence {

bool operator==(const Event& a, const Event& b) {
  return a.cursor == b.cursor && a.kind == b.kind && a.user_id == b.user_id &&
         a.connection_id == b.connection_id && a.device_id == b.device_id &&
         a.node_id == b.node_id && a.reason == b.reason && a.at == b.at;
}

void PrintTo(const Event& e, std::ostream* os) {
  auto shown = [](const std::string& s) {
    return s.size() <= 40 ? absl::StrCat("\"", s, "\"")
                          : absl::StrCat("\"", s.substr(0, 20), "...\" (", s.size(), " bytes)");
  };
  *os << "{cursor " << e.cursor << ", kind " << static_cast<int>(e.kind) << ", user "
      << shown(e.user_id) << ", connection " << shown(e.connection_id) << ", device "
      << shown(e.device_id) << ", node " << shown(e.node_id) << ", reason " << shown(e.reason)
      << ", at " << absl::FormatTime(e.at) << "}";
}

namespace {

using push::testing::FakeClock;

Event Make(uint64_t cursor, Kind kind, std::string user, std::string connection, std::string device,
           std::string node, std::string reason, absl::Time at) {
  Event e;
  e.cursor = cursor;
  e.kind = kind;
  e.user_id = std::move(user);
  e.connection_id = std::move(connection);
  e.device_id = std::move(device);
  e.node_id = std::move(node);
  e.reason = std::move(reason);
  e.at = at;
  return e;
}

std::vector<Event> TakeAll(const Feed& feed, uint64_t after, size_t max = SIZE_MAX) {
  std::vector<Event> out;
  EXPECT_EQ(feed.Take(after, max, &out), Feed::Read::kOk);
  return out;
}

TEST(PackedFeedTest, EveryFieldComesBackExactly) {
  Feed::Options o;
  o.capacity = 1000;
  Feed feed(o);
  const absl::Time t = absl::FromUnixNanos(1'700'000'000'123'456'789);
  const std::string binary("a\0b\n\xff\x80z", 7);
  std::vector<Event> in = {
      // Nothing but defaults.
      Make(1, Kind::kConnected, "", "", "", "", "", absl::Time()),
      // An idle connection's pair: the ONLINE shares the CONNECTED's user and time.
      Make(2, Kind::kConnected, "pb1a2b3c4d5e-17", "0123456789abcdef0123", "", "node-a", "", t),
      Make(3, Kind::kOnline, "pb1a2b3c4d5e-17", "", "", "node-a", "", t),
      // A third with the same user and time (the one before shares them: this one keeps its own).
      Make(4, Kind::kConnected, "pb1a2b3c4d5e-17", "c2", "phone", "node-b", "", t),
      Make(5, Kind::kDisconnected, "pb1a2b3c4d5e-17", "c2", "phone", "node-b", "client closed", t),
      Make(6, Kind::kDisconnected, "ann", "c3", "tablet:2", "node-a", "client closed",
           t + absl::Nanoseconds(1)),
      Make(7, Kind::kOffline, "ann", "", "", "node-a", "", t + absl::Seconds(5)),
      Make(8, Kind::kResync, "", "", "", "", "resume point no longer kept", t),
      // Bytes that are not text, and strings too long to share (a node id and a reason).
      Make(9, Kind::kDisconnected, binary, binary, binary, binary, binary, t),
      Make(10, Kind::kConnected, std::string(300, 'u'), std::string(200, 'c'), std::string(64, 'd'),
           std::string(256, 'n'), std::string(1000, 'r'), t),
      // Kinds past the proto's (kept as given).
      Make(11, static_cast<Kind>(0), "k0", "", "", "", "", t),
      Make(12, static_cast<Kind>(7), "k7", "", "", "", "", t),
      Make(13, static_cast<Kind>(8), "k8", "", "", "", "", t),
      Make(14, static_cast<Kind>(255), "k255", "", "", "", "", t),
      // Times that are not whole nanoseconds, far ones, and infinite ones.
      Make(15, Kind::kOnline, "t", "", "", "n", "", t + absl::Nanoseconds(0.25)),
      Make(16, Kind::kOnline, "t", "", "", "n", "", absl::FromUnixSeconds(-5)),
      Make(17, Kind::kOnline, "t", "", "", "n", "", absl::FromUnixNanos(INT64_MAX)),
      Make(18, Kind::kOnline, "t", "", "", "n", "", absl::FromUnixNanos(INT64_MIN)),
      Make(19, Kind::kOnline, "t", "", "", "n", "", absl::FromUnixSeconds(int64_t{1} << 40)),
      Make(20, Kind::kOnline, "t", "", "", "n", "", absl::InfiniteFuture()),
      Make(21, Kind::kOnline, "t", "", "", "n", "", absl::InfinitePast()),
      Make(22, Kind::kOnline, "t", "", "", "n", "", absl::InfinitePast()),
      // Bigger than a whole block of the feed.
      Make(23, Kind::kConnected, std::string(70000, 'U'), "big", "", "node-a", "", t),
      Make(24, Kind::kOnline, std::string(70000, 'U'), "", "", "node-a", "", t),
      Make(25, Kind::kConnected, "after-big", "c", "", "node-c", "", t),
  };
  feed.Publish(in);
  EXPECT_EQ(feed.first(), 1u);
  EXPECT_EQ(feed.last(), 25u);
  EXPECT_EQ(TakeAll(feed, 0), in);
  // From every position, a few at a time.
  for (uint64_t after = 0; after < in.size(); ++after) {
    for (size_t max : {size_t{1}, size_t{3}}) {
      std::vector<Event> want(in.begin() + after, in.begin() + std::min(in.size(), after + max));
      EXPECT_EQ(TakeAll(feed, after, max), want) << "after " << after << ", max " << max;
    }
  }
}

TEST(PackedFeedTest, AnEventThatDoesNotFollowTheOneBeforeStartsTheFeedOver) {
  Feed::Options o;
  Feed feed(o);
  const absl::Time t = absl::FromUnixSeconds(1000);
  feed.Publish({Make(1, Kind::kConnected, "a", "1", "", "n", "", t),
                Make(2, Kind::kOnline, "a", "", "", "n", "", t)});
  // 5 is missing from this batch (the log skipped it): what the feed holds starts at 6.
  std::vector<Event> batch = {Make(3, Kind::kConnected, "b", "2", "", "n", "", t),
                              Make(4, Kind::kOnline, "b", "", "", "n", "", t),
                              Make(6, Kind::kConnected, "c", "3", "", "n", "", t),
                              Make(7, Kind::kOnline, "c", "", "", "n", "", t)};
  feed.Publish(batch);
  EXPECT_EQ(feed.first(), 6u);
  EXPECT_EQ(feed.last(), 7u);
  std::vector<Event> out;
  EXPECT_EQ(feed.Take(3, 10, &out), Feed::Read::kBefore) << "4 and 5 are only in the log";
  EXPECT_EQ(feed.Take(4, 10, &out), Feed::Read::kBefore);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(TakeAll(feed, 5), (std::vector<Event>{batch[2], batch[3]}));
  // Reset to where the feed is changes nothing; elsewhere it empties it.
  feed.Reset(7);
  EXPECT_EQ(feed.first(), 6u);
  feed.Reset(20);
  EXPECT_EQ(feed.first(), 21u);
  EXPECT_EQ(feed.last(), 20u);
  EXPECT_EQ(feed.Take(7, 10, &out), Feed::Read::kBefore);
  feed.Publish({Make(21, Kind::kOffline, "c", "", "", "n", "", t)});
  EXPECT_EQ(TakeAll(feed, 20),
            (std::vector<Event>{Make(21, Kind::kOffline, "c", "", "", "n", "", t)}));
}

// The feed as it was: every Event in a deque (and a gap anywhere starts it over).
class ModelFeed {
 public:
  ModelFeed(size_t capacity, absl::Duration retention)
      : capacity_(capacity), retention_(retention) {}

  void Publish(const std::vector<Event>& events) {
    for (const Event& e : events) {
      if (e.cursor != last_ + 1) events_.clear();
      events_.push_back(e);
      last_ = e.cursor;
      while (events_.size() > capacity_) events_.pop_front();
    }
  }
  void Trim(absl::Time now) {
    while (!events_.empty() && events_.front().at + retention_ < now) events_.pop_front();
  }
  Feed::Read Take(uint64_t after, size_t max, std::vector<Event>* out) const {
    if (after > last_) return Feed::Read::kAhead;
    if (after == last_) return Feed::Read::kOk;
    if (after + 1 < first()) return Feed::Read::kBefore;
    for (size_t i = after + 1 - first(); i < events_.size() && max > 0; ++i, --max) {
      out->push_back(events_[i]);
    }
    return Feed::Read::kOk;
  }
  uint64_t first() const { return events_.empty() ? last_ + 1 : events_.front().cursor; }
  uint64_t last() const { return last_; }

 private:
  const size_t capacity_;
  const absl::Duration retention_;
  std::deque<Event> events_;
  uint64_t last_ = 0;
};

// Random connections' events over many blocks, evicted by count and by age, read from anywhere:
// the same as the model's, event for event.
TEST(PackedFeedTest, MatchesTheModelOverManyBlocksEvictionsAndTrims) {
  std::mt19937_64 rng(20261207);
  auto pick = [&rng](size_t n) { return static_cast<size_t>(rng() % n); };
  auto hex = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s.push_back("0123456789abcdef"[pick(16)]);
    return s;
  };
  std::vector<std::string> users;
  for (int i = 0; i < 300; ++i) users.push_back(absl::StrCat("user-", hex(pick(30))));
  users.push_back("");
  const std::vector<std::string> devices = {"", "", "", "phone", "tablet:7", std::string(64, 'x')};
  std::vector<std::string> nodes = {"n1", "n2", "pushd-7f9c6b8d5-x2k4q", "", std::string(300, 'N')};
  std::vector<std::string> reasons = {"", "client closed", "pong timeout", "node lost", "deleted"};

  FakeClock clock;
  Feed::Options o;
  o.capacity = 7000;
  o.retention = absl::Seconds(30);
  o.clock = &clock;
  Feed feed(o);
  ModelFeed model(o.capacity, o.retention);

  uint64_t cursor = 0;
  absl::Time at = clock.Now();
  for (int round = 0; round < 400; ++round) {
    std::vector<Event> batch;
    const size_t n = 1 + pick(300);
    for (size_t i = 0; i < n; ++i) {
      // Now and then a cursor skips (the feed starts over), mostly at a batch's start.
      cursor += (pick(2000) == 0 || (i == 0 && pick(50) == 0)) ? 2 + pick(5) : 1;
      switch (pick(4)) {
        case 0:
          break;  // the same time as the event before
        case 1:
          at = clock.Now();
          break;
        case 2:
          at = clock.Now() + absl::Nanoseconds(0.25 * static_cast<double>(pick(8)));
          break;
        default:
          at = clock.Now() + absl::Microseconds(static_cast<int64_t>(pick(1000)));
      }
      const std::string& user = users[pick(users.size())];
      const std::string& node = nodes[pick(nodes.size())];
      switch (pick(4)) {
        case 0: {  // an idle connection's pair
          batch.push_back(
              Make(cursor, Kind::kConnected, user, hex(20), devices[pick(6)], node, "", at));
          if (i + 1 < n) batch.push_back(Make(++cursor, Kind::kOnline, user, "", "", node, "", at));
          ++i;
          break;
        }
        case 1: {
          // Reasons beyond what the feed shares: many distinct ones, some long.
          std::string reason = pick(3) == 0 ? absl::StrCat("closed: ", hex(pick(400)))
                                            : reasons[pick(reasons.size())];
          batch.push_back(Make(cursor, Kind::kDisconnected, user, hex(20), devices[pick(6)], node,
                               std::move(reason), at));
          break;
        }
        case 2:
          batch.push_back(Make(cursor, Kind::kOffline, user, "", "", node, "", at));
          break;
        default:
          batch.push_back(Make(cursor, static_cast<Kind>(1 + pick(5)), users[pick(users.size())],
                               hex(pick(40)), devices[pick(6)], absl::StrCat("node-", pick(60)), "",
                               at));
      }
    }
    feed.Publish(batch);
    model.Publish(batch);
    if (pick(10) == 0) {
      clock.Advance(absl::Seconds(static_cast<int64_t>(1 + pick(10))));
      feed.Trim();
      model.Trim(clock.Now());
    }
    ASSERT_EQ(feed.first(), model.first()) << "round " << round;
    ASSERT_EQ(feed.last(), model.last()) << "round " << round;
    for (int read = 0; read < 5; ++read) {
      // Anywhere from a little before the oldest held to a little past the newest.
      const uint64_t lo = model.first() >= 2 ? model.first() - 2 : 0;
      const uint64_t after = lo + rng() % (model.last() + 3 - lo);
      const size_t max = pick(3) == 0 ? SIZE_MAX : pick(400);
      std::vector<Event> got, want;
      ASSERT_EQ(feed.Take(after, max, &got), model.Take(after, max, &want))
          << "round " << round << ", after " << after;
      ASSERT_EQ(got, want) << "round " << round << ", after " << after << ", max " << max;
    }
  }
  std::vector<Event> got, want;
  ASSERT_EQ(feed.Take(model.first() - 1, SIZE_MAX, &got),
            model.Take(model.first() - 1, SIZE_MAX, &want));
  EXPECT_EQ(got, want);
  EXPECT_GT(got.size(), 1000u);
}

// ---- PresenceState ----

// The rules as they were written: std::string keys, node "\n" connection id.
class ModelState {
 public:
  explicit ModelState(absl::Duration offline_delay) : offline_delay_(offline_delay) {}

  void Connected(std::string_view node, const ConnectionInfo& c, absl::Time now,
                 std::vector<Event>* out) {
    auto [it, fresh] = connections_.try_emplace(Key(node, c.connection_id));
    if (!fresh) return;
    it->second = Open{c.user_id, c.device_id};
    Event e;
    e.kind = Kind::kConnected;
    e.user_id = c.user_id;
    e.connection_id = c.connection_id;
    e.device_id = c.device_id;
    e.node_id = std::string(node);
    e.at = now;
    out->push_back(e);
    auto [user, first] = users_.try_emplace(c.user_id);
    ++user->second.connections;
    user->second.leaving_since = absl::InfiniteFuture();
    if (first) {
      e.kind = Kind::kOnline;
      e.connection_id.clear();
      e.device_id.clear();
      out->push_back(std::move(e));
    }
  }
  void Disconnected(std::string_view node, std::string_view connection_id, std::string_view reason,
                    absl::Time now, std::vector<Event>* out) {
    auto it = connections_.find(Key(node, connection_id));
    if (it == connections_.end()) return;
    Event e;
    e.kind = Kind::kDisconnected;
    e.user_id = it->second.user_id;
    e.connection_id = std::string(connection_id);
    e.device_id = it->second.device_id;
    e.node_id = std::string(node);
    e.reason = std::string(reason);
    e.at = now;
    connections_.erase(it);
    auto user = users_.find(e.user_id);
    if (user != users_.end() && user->second.connections > 0 && --user->second.connections == 0) {
      user->second.leaving_since = now;
      user->second.last_node = std::string(node);
      due_.emplace(now + offline_delay_, e.user_id);
    }
    out->push_back(std::move(e));
  }
  void NodeLost(std::string_view node, absl::Time now, std::vector<Event>* out) {
    std::vector<std::string> ids;
    const std::string prefix = absl::StrCat(ToAbsl(node), "\n");
    for (const auto& [key, open] : connections_) {
      if (key.size() > prefix.size() && key.compare(0, prefix.size(), prefix) == 0) {
        ids.push_back(key.substr(prefix.size()));
      }
    }
    std::sort(ids.begin(), ids.end());
    for (const std::string& id : ids) Disconnected(node, id, kNodeLost, now, out);
  }
  void Expire(absl::Time now, std::vector<Event>* out) {
    while (!due_.empty() && due_.begin()->first <= now) {
      auto entry = due_.begin();
      std::string user_id = entry->second;
      absl::Time due = entry->first;
      due_.erase(entry);
      auto user = users_.find(user_id);
      if (user == users_.end() || user->second.connections > 0 ||
          user->second.leaving_since + offline_delay_ != due) {
        continue;
      }
      Event e;
      e.kind = Kind::kOffline;
      e.user_id = user_id;
      e.node_id = user->second.last_node;
      e.at = now;
      users_.erase(user);
      out->push_back(std::move(e));
    }
  }
  absl::Time NextDue() const { return due_.empty() ? absl::InfiniteFuture() : due_.begin()->first; }
  size_t connections() const { return connections_.size(); }
  bool online(const std::string& user) const { return users_.contains(user); }

 private:
  struct User {
    uint32_t connections = 0;
    absl::Time leaving_since = absl::InfiniteFuture();
    std::string last_node;
  };
  struct Open {
    std::string user_id;
    std::string device_id;
  };
  static std::string Key(std::string_view node, std::string_view id) {
    return absl::StrCat(ToAbsl(node), "\n", ToAbsl(id));
  }
  const absl::Duration offline_delay_;
  absl::flat_hash_map<std::string, User> users_;
  absl::flat_hash_map<std::string, Open> connections_;
  std::multimap<absl::Time, std::string> due_;
};

TEST(PackedStateTest, MakesTheSameEventsAsThePlainRules) {
  std::mt19937_64 rng(7);
  auto pick = [&rng](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::string> users;
  for (int i = 0; i < 40; ++i) users.push_back(absl::StrCat("user-", i, std::string(i % 25, 'x')));
  users.push_back("");
  std::vector<std::string> ids;
  for (int i = 0; i < 150; ++i) ids.push_back(absl::StrCat("c", i, std::string(i % 30, 'y')));
  ids.push_back("");
  const std::vector<std::string> nodes = {"n1", "n2", "a-much-longer-node-name-0123456789", ""};
  const std::vector<std::string> devices = {"", "", "phone", std::string(64, 'd')};
  const std::vector<std::string> reasons = {"client closed", "pong timeout", "", "deleted"};

  PresenceState state(absl::Seconds(5));
  ModelState model(absl::Seconds(5));
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  for (int step = 0; step < 20000; ++step) {
    std::vector<Event> got, want;
    const std::string& node = nodes[pick(nodes.size())];
    switch (pick(10)) {
      case 0:
      case 1:
      case 2:
      case 3: {
        ConnectionInfo c;
        c.user_id = users[pick(users.size())];
        c.connection_id = ids[pick(ids.size())];
        c.device_id = devices[pick(devices.size())];
        state.Connected(node, c, now, &got);
        model.Connected(node, c, now, &want);
        break;
      }
      case 4:
      case 5:
      case 6: {
        const std::string& id = ids[pick(ids.size())];
        const std::string& reason = reasons[pick(reasons.size())];
        state.Disconnected(node, id, reason, now, &got);
        model.Disconnected(node, id, reason, now, &want);
        break;
      }
      case 7:
        if (pick(20) == 0) {
          state.NodeLost(node, now, &got);
          model.NodeLost(node, now, &want);
        }
        break;
      default:
        now += absl::Milliseconds(static_cast<int64_t>(pick(3000)));
        state.Expire(now, &got);
        model.Expire(now, &want);
    }
    ASSERT_EQ(got, want) << "step " << step;
    ASSERT_EQ(state.connections(), model.connections()) << "step " << step;
    ASSERT_EQ(state.NextDue(), model.NextDue()) << "step " << step;
    if (step % 100 == 0) {
      for (const std::string& u : users) ASSERT_EQ(state.online(u), model.online(u)) << u;
    }
  }
  // Everyone leaves: every connection is closed and every user goes offline, in both.
  std::vector<Event> got, want;
  for (const std::string& node : nodes) {
    state.NodeLost(node, now, &got);
    model.NodeLost(node, now, &want);
  }
  for (const std::string& node : nodes) {
    state.Disconnected(node, "", "client closed", now, &got);
    model.Disconnected(node, "", "client closed", now, &want);
  }
  now += absl::Seconds(10);
  state.Expire(now, &got);
  model.Expire(now, &want);
  EXPECT_EQ(got, want);
  EXPECT_EQ(state.connections(), 0u);
  for (const std::string& u : users) EXPECT_FALSE(state.online(u)) << u;
  EXPECT_EQ(state.NextDue(), absl::InfiniteFuture());
}

}  // namespace
}  // namespace push::presence
