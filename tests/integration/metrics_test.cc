// GET /metrics: Prometheus text whose counters move as a user would expect.

#include <map>
#include <sstream>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"

namespace push::testing {
namespace {

// Parses "name{labels} value" sample lines into a map keyed by "name{labels}".
std::map<std::string, double> Scrape(int port) {
  HttpResponse res = HttpRequest(port, "GET", "/metrics");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.headers["content-type"].rfind("text/plain", 0), 0u);
  std::map<std::string, double> out;
  std::istringstream in(res.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

TEST(MetricsTest, CountersFollowWhatHappens) {
  PushdProcess pushd({"--history_size=2"});
  auto stub = pushd.Stub();
  auto before = Scrape(pushd.ws_port());
  EXPECT_EQ(before["pushd_connections{role=\"all\"}"], 0);
  EXPECT_EQ(before.count("pushd_build_info{version=\"0.1.0\",role=\"all\"}"), 1u);

  // Three offline pushes with history 2: one evicted, so a replay from 0 has a gap.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(DoPush(*stub, "mia", "1").ok());
  ASSERT_FALSE(DoPush(*stub, "mia", "{").ok());
  ASSERT_TRUE(DoPush(*stub, "mia", "1", nullptr, "same").ok());
  ASSERT_TRUE(DoPush(*stub, "mia", "1", nullptr, "same").ok());
  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=mia&since=0");
  ASSERT_TRUE(ws);
  ws->ReadJson();  // welcome
  ws->ReadJson();  // gap 1..2
  ws->ReadJson();  // 3
  ws->ReadJson();  // 4
  ASSERT_TRUE(DoPush(*stub, "mia", "2").ok());
  ASSERT_EQ(ws->ReadJson().at("seq"), 5);

  std::map<std::string, double> m;
  ASSERT_TRUE(WaitFor([&] {
    m = Scrape(pushd.ws_port());
    return m["pushd_deliveries_total"] == 3;
  }));
  EXPECT_EQ(m["pushd_connections{role=\"all\"}"], 1);
  EXPECT_EQ(m["pushd_connects_total"], 1);
  EXPECT_EQ(m["pushd_pushes_total{result=\"ok\"}"], 5);
  EXPECT_EQ(m["pushd_pushes_total{result=\"duplicate\"}"], 1);
  EXPECT_EQ(m["pushd_pushes_total{result=\"rejected\"}"], 1);
  EXPECT_EQ(m["pushd_replays_total"], 2);
  EXPECT_EQ(m["pushd_gaps_total"], 1);
  EXPECT_GE(m["pushd_store_evictions_total"], 2);
  EXPECT_GT(m["pushd_store_bytes"], 0);
  EXPECT_EQ(m["pushd_push_duration_seconds_count"], 6);
  // Only the live message counts for push -> write latency; replays do not.
  EXPECT_EQ(m["pushd_delivery_latency_seconds_count"], 1);
  EXPECT_EQ(m["pushd_delivery_latency_seconds_bucket{le=\"+Inf\"}"], 1);
  EXPECT_LE(m["pushd_delivery_latency_seconds_bucket{le=\"0.0001\"}"],
            m["pushd_delivery_latency_seconds_bucket{le=\"10\"}"]);

  ASSERT_TRUE(DoDelete(*stub, "mia").ok());
  ASSERT_TRUE(WaitFor([&] {
    m = Scrape(pushd.ws_port());
    return m["pushd_connections{role=\"all\"}"] == 0;
  }));
  EXPECT_EQ(m["pushd_disconnects_total{reason=\"deleted\"}"], 1);
  EXPECT_EQ(m["pushd_send_queue_bytes"], 0);
}

// The threads that carry pushes grow the heap with chunks an idle-priority thread faulted in
// ahead (common/base/prefaulted_heap.h), when pushd runs on jemalloc (the default build; the
// sanitizer build keeps glibc's malloc and has none of this). What is stored there comes back
// intact.
TEST(MetricsTest, PushesGrowTheHeapFromPrefaultedChunks) {
  // One queue thread, so one arena: what the pushes grow is not spread over as many as the
  // machine has cores.
  PushdOptions options;
  options.capture_stderr = true;
  PushdProcess pushd({"--history_size=100", "--grpc_threads=1"}, options);
  auto stub = pushd.Stub();
  std::map<std::string, double> m = Scrape(pushd.ws_port());
  const std::string log = pushd.Stderr();
#ifdef PUSHD_WITH_JEMALLOC
  if (size_t off = log.find("prefaulted_heap=off ("); off != std::string::npos) {
    // A host where the pool must not run (kernel before 6.4, strict overcommit, ulimit -v):
    // pushd says why and exports none of it.
    EXPECT_EQ(m.count("pushd_heap_prefaulted_chunks"), 0u);
    GTEST_SKIP() << log.substr(off, log.find('\n', off) - off);
  }
  ASSERT_NE(log.find("prefaulted_heap=on ("), std::string::npos) << log;
  // The pool fills while nothing else runs (it holds two chunks).
  ASSERT_TRUE(WaitFor(
      [&] {
        m = Scrape(pushd.ws_port());
        return m["pushd_heap_prefaulted_chunks"] >= 1;
      },
      std::chrono::seconds(60)))
      << "pool never filled: " << m["pushd_heap_prefaulted_chunks"];
  const double prefaulted = m["pushd_heap_chunks_total{source=\"prefaulted\"}"];
  const double taken = prefaulted + m["pushd_heap_chunks_total{source=\"inline\"}"];

  // 160 stored messages of 60,000 bytes: over 9 MiB of heap, more than four chunks of growth
  // whatever the arena had left over from before.
  auto text = [](int user, int i) {
    return std::to_string(user) + "-" + std::to_string(i) + "-" +
           std::string(60000, static_cast<char>('a' + (user * 7 + i) % 26));
  };
  for (int user = 0; user < 4; ++user) {
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(DoPush(*stub, "heap" + std::to_string(user), "\"" + text(user, i) + "\"").ok());
    }
  }
  m = Scrape(pushd.ws_port());
  EXPECT_GT(m["pushd_store_bytes"], 9.0 * (1 << 20));
  // The first chunk the pushes took was waiting in the pool; a busy machine may have left the
  // idle thread behind for the later ones, which the taking thread then faults in itself.
  EXPECT_GT(m["pushd_heap_chunks_total{source=\"prefaulted\"}"], prefaulted);
  EXPECT_GE(m["pushd_heap_chunks_total{source=\"prefaulted\"}"] +
                m["pushd_heap_chunks_total{source=\"inline\"}"],
            taken + 4);

  for (int user = 0; user < 4; ++user) {
    auto ws =
        WsClient::Connect(pushd.ws_port(), "/ws?user_id=heap" + std::to_string(user) + "&since=0");
    ASSERT_TRUE(ws);
    ASSERT_EQ(ws->ReadJson().at("type"), "welcome");
    for (int i = 0; i < 40; ++i) {
      boost::json::value frame = ws->ReadJson();
      ASSERT_EQ(frame.at("seq"), i + 1);
      ASSERT_EQ(frame.at("type"), "message");
      ASSERT_EQ(frame.at("data").as_string(), text(user, i)) << user << " " << i;
    }
  }
#else
  EXPECT_NE(log.find("prefaulted_heap=off (the malloc is not jemalloc)"), std::string::npos) << log;
  EXPECT_EQ(m.count("pushd_heap_prefaulted_chunks"), 0u);
  EXPECT_EQ(m.count("pushd_heap_chunks_total{source=\"prefaulted\"}"), 0u);
#endif
}

}  // namespace
}  // namespace push::testing
