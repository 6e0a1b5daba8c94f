// Devices and receipts (CONTRACT §6): the device_id query parameter, per-device cursors and
// GetReceipts, against a real pushd (in memory, and with a real redis-server) with a real gRPC
// client and real WebSocket clients. Cursor moves are fire and forget: what follows one polls.

#include <algorithm>
#include <boost/json.hpp>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;

enum class Backend { kMemory, kRedis };

class DevicesTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { Start({}); }

  // (Re)starts pushd with `extra` flags.
  void Start(const std::vector<std::string>& extra) {
    pushd_.reset();
    std::vector<std::string> args{"--log_level=warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    if (GetParam() == Backend::kRedis) {
      // scripts/setup.sh installs redis-server: its absence is a failure, not a skip.
      ASSERT_TRUE(RedisServer::Available()) << "redis-server is not installed (scripts/setup.sh)";
      if (!redis_) redis_ = std::make_unique<RedisServer>();
      ASSERT_TRUE(redis_->running());
      args.push_back("--redis=" + redis_->url());
    }
    pushd_ = std::make_unique<PushdProcess>(args);
    ASSERT_TRUE(pushd_->started());
    stub_ = pushd_->Stub();
  }

  // Opens /ws?<query> and reads the welcome frame (into *welcome when given).
  std::unique_ptr<WsClient> Open(const std::string& query, json::value* welcome = nullptr) {
    return ConnectAndReadWelcome(pushd_->ws_port(), "/ws?" + query, welcome);
  }

  // Reads `count` message frames; their seqs.
  static std::vector<uint64_t> ReadSeqs(WsClient& ws, size_t count) {
    std::vector<uint64_t> seqs;
    while (seqs.size() < count) {
      WsEvent event = ws.Read();
      if (event.kind != WsEvent::kText) {
        ADD_FAILURE() << "wanted a frame, got kind " << event.kind << " " << event.data;
        break;
      }
      json::value frame = json::parse(event.data);
      if (frame.at("type") != "message") {
        ADD_FAILURE() << "unexpected frame " << event.data;
        continue;
      }
      seqs.push_back(frame.at("seq").to_number<uint64_t>());
    }
    return seqs;
  }

  void Push(const std::string& user, const std::string& data, const std::string& id = "",
            uint64_t* seq = nullptr) {
    v1::PushResponse res;
    grpc::Status s = DoPush(*stub_, user, data, &res, id);
    ASSERT_TRUE(s.ok()) << s.error_message();
    if (seq) *seq = res.seq();
  }

  grpc::Status GetReceipts(const std::string& user, const std::string& message_id, uint64_t seq,
                           v1::GetReceiptsResponse* res) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetReceiptsRequest req;
    req.set_user_id(user);
    req.set_message_id(message_id);
    req.set_seq(seq);
    return stub_->GetReceipts(&ctx, req, res);
  }

  // The receipts as "device:STATE@cursor", in the order given; "error: ..." on failure.
  std::string ReceiptsOf(const std::string& user, const std::string& message_id, uint64_t seq) {
    v1::GetReceiptsResponse res;
    grpc::Status s = GetReceipts(user, message_id, seq, &res);
    if (!s.ok()) return "error: " + s.error_message();
    std::string out;
    for (const v1::Receipt& r : res.receipts()) {
      if (!out.empty()) out += " ";
      out += r.device_id() + ":" + v1::Receipt::State_Name(r.state()) + "@" +
             std::to_string(r.cursor());
    }
    return out;
  }

  // Polls until the receipts read `want` (cursor moves are fire and forget).
  ::testing::AssertionResult ReceiptsBecome(const std::string& user, const std::string& message_id,
                                            uint64_t seq, const std::string& want) {
    std::string last;
    if (WaitFor([&] { return (last = ReceiptsOf(user, message_id, seq)) == want; })) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << "receipts stayed '" << last << "', wanted '" << want << "'";
  }

  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<PushdProcess> pushd_;
  std::unique_ptr<v1::PushService::Stub> stub_;
};

INSTANTIATE_TEST_SUITE_P(Backends, DevicesTest,
                         ::testing::Values(Backend::kMemory, Backend::kRedis),
                         [](const auto& info) {
                           return info.param == Backend::kMemory ? "Memory" : "Redis";
                         });

TEST_P(DevicesTest, EachDeviceReplaysFromItsOwnCursor) {
  for (int i = 1; i <= 3; ++i) Push("dora", std::to_string(i));
  json::value welcome;
  auto a = Open("user_id=dora&device_id=phone", &welcome);
  ASSERT_TRUE(a);
  EXPECT_EQ(welcome.at("device_id"), "phone");
  EXPECT_EQ(welcome.at("user_id"), "dora");
  EXPECT_EQ(welcome.at("seq").to_number<uint64_t>(), 3u);
  EXPECT_EQ(ReadSeqs(*a, 3), (std::vector<uint64_t>{1, 2, 3}));
  ASSERT_TRUE(ReceiptsBecome("dora", "", 3, "phone:WRITTEN@3"));
  a->Close();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub_, "dora").total() == 0; }));

  // Another device of the user gets 1..3 too: the phone's writes moved only its own cursor.
  auto b = Open("user_id=dora&device_id=laptop");
  ASSERT_TRUE(b);
  EXPECT_EQ(ReadSeqs(*b, 3), (std::vector<uint64_t>{1, 2, 3}));
  ASSERT_TRUE(ReceiptsBecome("dora", "", 3, "laptop:WRITTEN@3 phone:WRITTEN@3"));
  b->Close();
  Push("dora", "4");

  // The phone again, without since: only what came after its cursor.
  auto again = Open("user_id=dora&device_id=phone", &welcome);
  ASSERT_TRUE(again);
  EXPECT_EQ(welcome.at("seq").to_number<uint64_t>(), 4u);
  EXPECT_EQ(ReadSeqs(*again, 1), (std::vector<uint64_t>{4}));
  // And a connection without a device still has the user's shared cursor, untouched: 1..4.
  json::value plain_welcome;
  auto plain = Open("user_id=dora", &plain_welcome);
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain_welcome.as_object().contains("device_id")) << plain_welcome;
  EXPECT_EQ(ReadSeqs(*plain, 4), (std::vector<uint64_t>{1, 2, 3, 4}));
}

TEST_P(DevicesTest, ReceiptsGoFromNothingToWrittenToAcked) {
  uint64_t seq = 0;
  Push("rex", R"({"n":1})", "order-1", &seq);
  ASSERT_EQ(seq, 1u);
  // Nobody has it yet: an answer with no receipts.
  v1::GetReceiptsResponse res;
  grpc::Status s = GetReceipts("rex", "order-1", 0, &res);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(res.seq(), 1u);
  EXPECT_EQ(res.receipts_size(), 0);

  // An ack=1 connection of the phone receives it: written, its cursor waits for the ack.
  auto phone = Open("user_id=rex&device_id=phone&ack=1");
  ASSERT_TRUE(phone);
  EXPECT_EQ(ReadSeqs(*phone, 1), (std::vector<uint64_t>{1}));
  ASSERT_TRUE(ReceiptsBecome("rex", "order-1", 0, "phone:WRITTEN@0"));
  ASSERT_TRUE(phone->SendText(R"({"type":"ack","seq":1})"));
  ASSERT_TRUE(ReceiptsBecome("rex", "order-1", 0, "phone:ACKED@1"));

  // A connection without ack=1 (a device, then none): written is as far as it goes.
  auto tablet = Open("user_id=rex&device_id=tablet");
  ASSERT_TRUE(tablet);
  EXPECT_EQ(ReadSeqs(*tablet, 1), (std::vector<uint64_t>{1}));
  ASSERT_TRUE(ReceiptsBecome("rex", "", 1, "phone:ACKED@1 tablet:WRITTEN@1"));
  auto plain = Open("user_id=rex");
  ASSERT_TRUE(plain);
  EXPECT_EQ(ReadSeqs(*plain, 1), (std::vector<uint64_t>{1}));
  ASSERT_TRUE(ReceiptsBecome("rex", "", 1, ":WRITTEN@1 phone:ACKED@1 tablet:WRITTEN@1"));

  // A live message: by the server-made id, written to all three, acked by none yet.
  v1::PushResponse pushed;
  ASSERT_TRUE(DoPush(*stub_, "rex", "2", &pushed).ok());
  for (WsClient* ws : {phone.get(), tablet.get(), plain.get()}) {
    EXPECT_EQ(ReadSeqs(*ws, 1), (std::vector<uint64_t>{2}));
  }
  ASSERT_TRUE(
      ReceiptsBecome("rex", pushed.message_id(), 0, ":WRITTEN@2 phone:WRITTEN@1 tablet:WRITTEN@2"));
  ASSERT_TRUE(phone->SendText(R"({"type":"ack","seq":2})"));
  ASSERT_TRUE(
      ReceiptsBecome("rex", pushed.message_id(), 0, ":WRITTEN@2 phone:ACKED@2 tablet:WRITTEN@2"));
}

TEST_P(DevicesTest, GetReceiptsErrorsSayWhatIsWrong) {
  Push("sam", "1", "known");
  v1::GetReceiptsResponse res;
  grpc::Status s = GetReceipts("sam", "unknown-id", 0, &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_NE(s.error_message().find("unknown-id"), std::string::npos) << s.error_message();
  s = GetReceipts("nobody", "known", 0, &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  s = GetReceipts("sam", "", 2, &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("latest seq"), std::string::npos) << s.error_message();
  s = GetReceipts("sam", "known", 1, &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("not both"), std::string::npos) << s.error_message();
  s = GetReceipts("sam", "", 0, &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = GetReceipts("not a user", "", 1, &res);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("user_id"), std::string::npos) << s.error_message();
  s = GetReceipts("sam", "", 1, &res);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_P(DevicesTest, ABadDeviceIdIsRefusedWith400) {
  const std::string too_long(65, 'd');
  for (const std::string& bad : {std::string(""), too_long, std::string("a%20b"),
                                 std::string("a@b"), std::string("a/b"), std::string("%C3%A9")}) {
    SCOPED_TRACE("device_id=" + bad);
    HttpResponse res =
        HttpRequest(pushd_->ws_port(), "GET", "/ws?user_id=dan&device_id=" + bad, UpgradeHeaders());
    EXPECT_EQ(res.status, 400) << res.body;
    EXPECT_NE(res.body.find("device_id"), std::string::npos) << res.body;
    res = HttpRequest(pushd_->ws_port(), "GET", "/getPushNews?userId=dan&device_id=" + bad,
                      UpgradeHeaders());
    EXPECT_EQ(res.status, 400) << res.body;
  }
  // The longest and every kind of character allowed.
  json::value welcome;
  const std::string good = "Az09._:-" + std::string(56, 'x');
  auto ws = Open("user_id=dan&device_id=" + good, &welcome);
  ASSERT_TRUE(ws);
  EXPECT_EQ(welcome.at("device_id").as_string(), good);
}

TEST_P(DevicesTest, ListClientsShowsTheDevice) {
  auto phone = Open("user_id=lia&device_id=phone-7");
  ASSERT_TRUE(phone);
  auto plain = Open("user_id=lia");
  ASSERT_TRUE(plain);
  auto compat = WsClient::Connect(pushd_->ws_port(), "/getPushNews?userId=lia&device_id=old-tab");
  ASSERT_TRUE(compat);
  std::vector<std::string> devices;
  ASSERT_TRUE(WaitFor([&] {
    v1::ListClientsResponse res = DoList(*stub_, "lia");
    devices.clear();
    for (const v1::Client& c : res.clients()) devices.push_back(c.device_id());
    std::sort(devices.begin(), devices.end());
    return devices == std::vector<std::string>{"", "old-tab", "phone-7"};
  })) << "listed devices: "
      << ::testing::PrintToString(devices);
}

// The flags reach the store: one device per user makes the next device push the previous one
// out; a short ttl drops a device soon after its connection ends.
TEST_P(DevicesTest, TheDeviceFlagsAreApplied) {
  ASSERT_NO_FATAL_FAILURE(Start({"--max_devices_per_user=1"}));
  Push("flo", "1");
  for (const std::string device : {"first", "second"}) {
    auto ws = Open("user_id=flo&device_id=" + device);
    ASSERT_TRUE(ws);
    EXPECT_EQ(ReadSeqs(*ws, 1), (std::vector<uint64_t>{1}));
    ASSERT_TRUE(ReceiptsBecome("flo", "", 1, device + ":WRITTEN@1"));
  }
  ASSERT_NO_FATAL_FAILURE(Start({"--device_ttl=3s"}));
  Push("gus", "1");
  {
    auto ws = Open("user_id=gus&device_id=brief");
    ASSERT_TRUE(ws);
    EXPECT_EQ(ReadSeqs(*ws, 1), (std::vector<uint64_t>{1}));
    ASSERT_TRUE(ReceiptsBecome("gus", "", 1, "brief:WRITTEN@1"));
  }
  ASSERT_TRUE(ReceiptsBecome("gus", "", 1, ""));
  // Gone: its next connection replays what is retained, like a device never seen.
  auto ws = Open("user_id=gus&device_id=brief");
  ASSERT_TRUE(ws);
  EXPECT_EQ(ReadSeqs(*ws, 1), (std::vector<uint64_t>{1}));
}

}  // namespace
}  // namespace push::testing
