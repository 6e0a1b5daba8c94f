#include <algorithm>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/delivery/hub.h"
#include "common/delivery/memory_store.h"
#include "gtest/gtest.h"
#include "services/push_service.h"
#include "tests/testing/fakes.h"

namespace push::service {
namespace {

using ::push::testing::FakeClock;
using ::push::testing::RecordingConnection;

::testing::AssertionResult MessageHas(const absl::Status& status, const std::string& part) {
  std::string message(status.message());
  if (message.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << message << "' does not mention '" << part << "'";
}

class PushLogicTest : public ::testing::Test {
 protected:
  PushLogicTest()
      : store_(store::MemoryStoreOptions{}, &clock_),
        logic_(
            PushOptions{
                .max_message_bytes = 1024, .history_ttl = absl::Hours(24), .node_id = "node-a"},
            &store_, &directory_) {
    store_.SetPublicationSink(&hub_);
  }

  std::shared_ptr<RecordingConnection> Connect(const std::string& user, const std::string& id,
                                               const std::string& device = "") {
    ConnectionInfo info;
    info.user_id = user;
    info.connection_id = id;
    info.device_id = device;
    info.remote_address = "10.0.0.1:4242";
    info.user_agent = "unit-test";
    info.connected_at = absl::FromUnixMillis(1700000000250);
    auto c = std::make_shared<RecordingConnection>(std::move(info), 11, 22);
    hub_.Add(c);
    return c;
  }

  // `done` may run on another thread; wait for it with a bound rather than assume inline.
  absl::Status Push(const std::string& user, const std::string& data, v1::PushResponse* response,
                    const std::string& message_id = "", uint32_t ttl_seconds = 0) {
    v1::PushRequest request;
    request.set_user_id(user);
    request.set_data(data);
    request.set_message_id(message_id);
    request.set_ttl_seconds(ttl_seconds);
    return Await([&](auto done) { logic_.Push(request, response, std::move(done)); });
  }
  absl::Status Push(const std::string& user, const std::string& data) {
    v1::PushResponse response;
    return Push(user, data, &response);
  }

  absl::Status Delete(const std::string& user, v1::DeleteClientResponse* response,
                      const std::string& connection_id = "", bool purge = false,
                      const std::string& reason = "") {
    v1::DeleteClientRequest request;
    request.set_user_id(user);
    request.set_connection_id(connection_id);
    request.set_purge(purge);
    request.set_reason(reason);
    return Await([&](auto done) { logic_.DeleteClient(request, response, std::move(done)); });
  }

  absl::Status List(const std::string& user, uint32_t page_size, const std::string& token,
                    v1::ListClientsResponse* response) {
    v1::ListClientsRequest request;
    request.set_user_id(user);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return Await([&](auto done) { logic_.ListClients(request, response, std::move(done)); });
  }

  absl::Status Receipts(const std::string& user, const std::string& message_id, uint64_t seq,
                        v1::GetReceiptsResponse* response) {
    v1::GetReceiptsRequest request;
    request.set_user_id(user);
    request.set_message_id(message_id);
    request.set_seq(seq);
    return Await([&](auto done) { logic_.GetReceipts(request, response, std::move(done)); });
  }

  template <typename Call>
  static absl::Status Await(Call call) {
    auto done = std::make_shared<absl::Notification>();
    auto result = std::make_shared<absl::Status>(absl::UnknownError("done never ran"));
    auto calls = std::make_shared<int>(0);
    call([done, result, calls](absl::Status s) {
      ++*calls;
      *result = std::move(s);
      done->Notify();
    });
    EXPECT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(10)));
    EXPECT_EQ(*calls, 1);
    return *result;
  }

  std::vector<uint64_t> StoredSeqs(const std::string& user) {
    std::vector<uint64_t> seqs;
    store::ReadRequest request;
    request.user_id = user;
    request.after = 0;
    store_.Read(std::move(request), [&seqs](absl::StatusOr<store::ReadResult> r) {
      ASSERT_TRUE(r.ok());
      for (const auto& m : r->messages) seqs.push_back(m->seq);
    });
    return seqs;
  }

  FakeClock clock_;
  store::MemoryStore store_;
  Hub hub_;
  LocalDirectory directory_{&hub_, "node-a"};
  PushLogic logic_;
};

using Seq = std::vector<uint64_t>;

TEST_F(PushLogicTest, PushToOfflineUserIsStoredAndNotDelivered) {
  v1::PushResponse res;
  ASSERT_TRUE(Push("alice", R"({"n":1})", &res).ok());
  EXPECT_EQ(res.seq(), 1u);
  EXPECT_EQ(res.delivered(), 0u);
  EXPECT_EQ(res.message_id().size(), 24u);
  ASSERT_TRUE(Push("alice", R"({"n":2})", &res).ok());
  EXPECT_EQ(res.seq(), 2u);
  EXPECT_EQ(StoredSeqs("alice"), (Seq{1, 2}));
}

TEST_F(PushLogicTest, PushIsDeliveredToEveryConnectionOfTheUser) {
  auto tab1 = Connect("alice", "c1");
  auto tab2 = Connect("alice", "c2");
  auto other = Connect("bob", "c3");
  v1::PushResponse res;
  ASSERT_TRUE(Push("alice", R"({"hello":"world"})", &res, "greeting-1").ok());
  EXPECT_EQ(res.delivered(), 2u);
  EXPECT_EQ(res.seq(), 1u);
  EXPECT_EQ(res.message_id(), "greeting-1");
  ASSERT_EQ(tab1->delivered().size(), 1u);
  ASSERT_EQ(tab2->delivered().size(), 1u);
  EXPECT_TRUE(other->delivered().empty());
  const Message& m = *tab1->delivered()[0];
  EXPECT_EQ(m.seq, 1u);
  EXPECT_EQ(m.id, "greeting-1");
  EXPECT_EQ(m.data(), R"({"hello":"world"})");
}

TEST_F(PushLogicTest, TtlSecondsSetsExpiryAndZeroMeansHistoryTtl) {
  v1::PushResponse res;
  ASSERT_TRUE(Push("alice", "1", &res, "", 0).ok());
  ASSERT_TRUE(Push("alice", "2", &res, "", 30).ok());
  ASSERT_TRUE(Push("alice", "3", &res, "", 90000).ok());  // longer than --history_ttl is kept
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(StoredSeqs("alice"), (Seq{1, 2, 3}));
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(StoredSeqs("alice"), (Seq{1, 3}));
  clock_.Advance(absl::Hours(24) - absl::Seconds(30));
  EXPECT_EQ(StoredSeqs("alice"), (Seq{3}));
  clock_.Advance(absl::Seconds(90000) - absl::Hours(24));
  EXPECT_TRUE(StoredSeqs("alice").empty());
}

TEST_F(PushLogicTest, DuplicateMessageIdKeepsSeqAndIsNotDeliveredAgain) {
  auto c = Connect("alice", "c1");
  v1::PushResponse first;
  ASSERT_TRUE(Push("alice", R"("once")", &first, "order-9").ok());
  EXPECT_EQ(first.delivered(), 1u);
  v1::PushResponse again;
  ASSERT_TRUE(Push("alice", R"("once")", &again, "order-9").ok());
  EXPECT_EQ(again.seq(), first.seq());
  EXPECT_EQ(again.message_id(), "order-9");
  EXPECT_EQ(again.delivered(), 0u);
  EXPECT_EQ(c->delivered().size(), 1u);
  EXPECT_EQ(StoredSeqs("alice"), (Seq{1}));
  // The same key for another user is a different message.
  v1::PushResponse bob;
  ASSERT_TRUE(Push("bob", R"("once")", &bob, "order-9").ok());
  EXPECT_EQ(bob.seq(), 1u);
}

TEST_F(PushLogicTest, RejectsBadUserIds) {
  auto c = Connect("alice", "c1");
  for (const std::string& user : {std::string(""), std::string("a b"), std::string(129, 'u'),
                                  std::string("caf\xc3\xa9"), std::string("a/b")}) {
    absl::Status s = Push(user, "1");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << user;
    EXPECT_TRUE(MessageHas(s, "user_id")) << user;
  }
  EXPECT_TRUE(Push(std::string(128, 'u'), "1").ok());
  EXPECT_TRUE(c->delivered().empty());
}

TEST_F(PushLogicTest, RejectsDataThatIsNotOneJsonValue) {
  auto c = Connect("alice", "c1");
  for (const std::string& data :
       {std::string(""), std::string("hello"), std::string("{\"a\":"), std::string("1 2"),
        std::string("\"\xff\""), std::string(65, '[') + std::string(65, ']')}) {
    absl::Status s = Push("alice", data);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << data;
    EXPECT_TRUE(MessageHas(s, "data")) << data;
  }
  EXPECT_TRUE(c->delivered().empty());
  EXPECT_TRUE(StoredSeqs("alice").empty());
}

TEST_F(PushLogicTest, RejectsOversizeDataNamingTheLimit) {
  std::string at_limit = "\"" + std::string(1022, 'x') + "\"";
  ASSERT_EQ(at_limit.size(), 1024u);
  EXPECT_TRUE(Push("alice", at_limit).ok());
  std::string over = "\"" + std::string(1023, 'x') + "\"";
  absl::Status s = Push("alice", over);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "1025"));
  EXPECT_TRUE(MessageHas(s, "1024"));
  EXPECT_TRUE(MessageHas(s, "max_message_bytes"));
  EXPECT_EQ(StoredSeqs("alice"), (Seq{1}));
}

TEST_F(PushLogicTest, RejectsBadMessageIds) {
  for (const std::string& id :
       {std::string("has space"), std::string("quote\""), std::string(129, 'k')}) {
    v1::PushResponse res;
    absl::Status s = Push("alice", "1", &res, id);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_TRUE(MessageHas(s, "message_id")) << id;
  }
  EXPECT_TRUE(StoredSeqs("alice").empty());
}

TEST_F(PushLogicTest, DrainingRejectsPushWithUnavailable) {
  auto c = Connect("alice", "c1");
  logic_.SetDraining();
  absl::Status s = Push("alice", "1");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(s.message().empty());
  EXPECT_TRUE(c->delivered().empty());
  EXPECT_TRUE(StoredSeqs("alice").empty());
}

TEST_F(PushLogicTest, DeleteClientClosesAllConnectionsWithDefaultReason) {
  auto a1 = Connect("alice", "c1");
  auto a2 = Connect("alice", "c2");
  auto b = Connect("bob", "c3");
  v1::DeleteClientResponse res;
  ASSERT_TRUE(Delete("alice", &res).ok());
  EXPECT_EQ(res.closed(), 2u);
  using Close = std::pair<uint16_t, std::string>;
  EXPECT_EQ(a1->closes(), (std::vector<Close>{{1000, "deleted"}}));
  EXPECT_EQ(a2->closes(), (std::vector<Close>{{1000, "deleted"}}));
  EXPECT_TRUE(b->closes().empty());
}

TEST_F(PushLogicTest, DeleteClientClosesOneConnectionWithTheGivenReason) {
  auto a1 = Connect("alice", "c1");
  auto a2 = Connect("alice", "c2");
  v1::DeleteClientResponse res;
  ASSERT_TRUE(Delete("alice", &res, "c2", false, "logged out").ok());
  EXPECT_EQ(res.closed(), 1u);
  EXPECT_TRUE(a1->closes().empty());
  using Close = std::pair<uint16_t, std::string>;
  EXPECT_EQ(a2->closes(), (std::vector<Close>{{1000, "logged out"}}));
}

TEST_F(PushLogicTest, DeleteClientWithoutConnectionIsNotFound) {
  Connect("alice", "c1");
  v1::DeleteClientResponse res;
  absl::Status s = Delete("bob", &res);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(s, "bob"));
  s = Delete("alice", &res, "nope");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(s, "nope"));
}

TEST_F(PushLogicTest, DeleteClientWithPurgeDropsStoredMessagesEvenWhenOffline) {
  ASSERT_TRUE(Push("bob", "1").ok());
  ASSERT_TRUE(Push("bob", "2").ok());
  v1::DeleteClientResponse res;
  ASSERT_TRUE(Delete("bob", &res, "", true).ok());
  EXPECT_EQ(res.closed(), 0u);
  EXPECT_TRUE(StoredSeqs("bob").empty());
  // Numbering continues after a purge.
  v1::PushResponse push;
  ASSERT_TRUE(Push("bob", "3", &push).ok());
  EXPECT_EQ(push.seq(), 3u);
}

TEST_F(PushLogicTest, DeleteClientWithPurgeAlsoClosesConnections) {
  auto c = Connect("alice", "c1");
  ASSERT_TRUE(Push("alice", "1").ok());
  v1::DeleteClientResponse res;
  ASSERT_TRUE(Delete("alice", &res, "", true, "reset").ok());
  EXPECT_EQ(res.closed(), 1u);
  using Close = std::pair<uint16_t, std::string>;
  EXPECT_EQ(c->closes(), (std::vector<Close>{{1000, "reset"}}));
  EXPECT_TRUE(StoredSeqs("alice").empty());
}

TEST_F(PushLogicTest, DeleteClientValidatesItsArguments) {
  auto c = Connect("alice", "c1");
  v1::DeleteClientResponse res;
  EXPECT_EQ(Delete("", &res).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Delete("a b", &res).code(), absl::StatusCode::kInvalidArgument);

  absl::Status s = Delete("alice", &res, "", false, std::string(121, 'r'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "reason"));
  EXPECT_TRUE(MessageHas(s, "120"));
  s = Delete("alice", &res, "", false, "bad \xff utf8");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "reason"));
  EXPECT_TRUE(c->closes().empty());

  ASSERT_TRUE(Delete("alice", &res, "", false, std::string(120, 'r')).ok());
  ASSERT_EQ(c->closes().size(), 1u);
  EXPECT_EQ(c->closes()[0].second, std::string(120, 'r'));
}

TEST_F(PushLogicTest, ListClientsReportsEveryField) {
  Connect("alice", "c1");
  v1::ListClientsResponse res;
  ASSERT_TRUE(List("", 0, "", &res).ok());
  EXPECT_EQ(res.total(), 1u);
  EXPECT_TRUE(res.next_page_token().empty());
  ASSERT_EQ(res.clients_size(), 1);
  const v1::Client& c = res.clients(0);
  EXPECT_EQ(c.user_id(), "alice");
  EXPECT_EQ(c.connection_id(), "c1");
  EXPECT_EQ(c.remote_address(), "10.0.0.1:4242");
  EXPECT_EQ(c.user_agent(), "unit-test");
  EXPECT_EQ(c.node_id(), "node-a");
  EXPECT_EQ(c.connected_at().seconds(), 1700000000);
  EXPECT_EQ(c.connected_at().nanos(), 250000000);
  EXPECT_EQ(c.messages_sent(), 11u);
  EXPECT_EQ(c.queued_bytes(), 22u);
}

TEST_F(PushLogicTest, ListClientsShowsTheDevice) {
  Connect("alice", "c1", "phone-1");
  Connect("alice", "c2");
  v1::ListClientsResponse res;
  ASSERT_TRUE(List("alice", 0, "", &res).ok());
  ASSERT_EQ(res.clients_size(), 2);
  EXPECT_EQ(res.clients(0).device_id(), "phone-1");
  EXPECT_EQ(res.clients(1).device_id(), "");
}

TEST_F(PushLogicTest, GetReceiptsAnswersFromTheStoresMarks) {
  v1::PushResponse pushed;
  ASSERT_TRUE(Push("alice", "1", &pushed, "m-1").ok());
  ASSERT_TRUE(Push("alice", "2").ok());
  v1::GetReceiptsResponse res;
  ASSERT_TRUE(Receipts("alice", "m-1", 0, &res).ok());
  EXPECT_EQ(res.seq(), 1u);
  EXPECT_EQ(res.receipts_size(), 0);
  store_.Advance("alice", "phone", 2, store::Progress::kWrittenAwaitingAck);
  store_.Advance("alice", "phone", 1, store::Progress::kAcked);
  store_.Advance("alice", "", 2, store::Progress::kWritten);
  res.Clear();
  ASSERT_TRUE(Receipts("alice", "", 2, &res).ok());
  EXPECT_EQ(res.seq(), 2u);
  ASSERT_EQ(res.receipts_size(), 2);
  EXPECT_EQ(res.receipts(0).device_id(), "");
  EXPECT_EQ(res.receipts(0).state(), v1::Receipt::WRITTEN);
  EXPECT_EQ(res.receipts(0).cursor(), 2u);
  EXPECT_EQ(res.receipts(1).device_id(), "phone");
  EXPECT_EQ(res.receipts(1).state(), v1::Receipt::WRITTEN);
  EXPECT_EQ(res.receipts(1).cursor(), 1u);
  res.Clear();
  ASSERT_TRUE(Receipts("alice", "", 1, &res).ok());
  ASSERT_EQ(res.receipts_size(), 2);
  EXPECT_EQ(res.receipts(1).state(), v1::Receipt::ACKED);
}

TEST_F(PushLogicTest, GetReceiptsNeedsExactlyOneOfMessageIdAndSeq) {
  ASSERT_TRUE(Push("alice", "1").ok());
  v1::GetReceiptsResponse res;
  absl::Status s = Receipts("alice", "", 0, &res);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "message_id"));
  EXPECT_TRUE(MessageHas(s, "seq"));
  s = Receipts("alice", "m-1", 1, &res);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "not both"));
  s = Receipts("bad user", "", 1, &res);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "user_id"));
  s = Receipts("alice", "has space", 0, &res);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "message_id"));
  s = Receipts("alice", "", 2, &res);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "latest seq"));
  s = Receipts("alice", "never-pushed", 0, &res);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(s, "never-pushed"));
}

TEST_F(PushLogicTest, ListClientsFiltersByUser) {
  Connect("alice", "c1");
  Connect("alice", "c2");
  Connect("bob", "c3");
  v1::ListClientsResponse res;
  ASSERT_TRUE(List("alice", 0, "", &res).ok());
  EXPECT_EQ(res.total(), 2u);
  ASSERT_EQ(res.clients_size(), 2);
  EXPECT_EQ(res.clients(0).connection_id(), "c1");
  EXPECT_EQ(res.clients(1).connection_id(), "c2");
  v1::ListClientsResponse none;
  ASSERT_TRUE(List("carol", 0, "", &none).ok());
  EXPECT_EQ(none.total(), 0u);
  EXPECT_EQ(none.clients_size(), 0);
  EXPECT_TRUE(none.next_page_token().empty());
  v1::ListClientsResponse bad;
  EXPECT_EQ(List("a b", 0, "", &bad).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PushLogicTest, ListClientsRejectsPageSizeOver1000) {
  v1::ListClientsResponse res;
  absl::Status s = List("", 1001, "", &res);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "page_size"));
  EXPECT_TRUE(MessageHas(s, "1000"));
  v1::ListClientsResponse ok;
  EXPECT_TRUE(List("", 1000, "", &ok).ok());
}

TEST_F(PushLogicTest, ListClientsRejectsTokensItDidNotGiveOut) {
  Connect("alice", "c1");
  for (const std::string& token :
       {std::string("garbage"), std::string("!!!"), std::string("djEKYWxpY2U"), std::string("AAAA"),
        std::string("djEKYSBiCmMx")}) {
    v1::ListClientsResponse res;
    absl::Status s = List("", 0, token, &res);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << token;
    EXPECT_TRUE(MessageHas(s, "page_token")) << token;
  }
}

TEST_F(PushLogicTest, PagingCoversEveryConnectionExactlyOnce) {
  std::set<std::pair<std::string, std::string>> expected;
  for (int u = 0; u < 7; ++u) {
    for (int c = 0; c < 3; ++c) {
      std::string user = "user" + std::to_string(u);
      std::string conn = "conn" + std::to_string(c);
      Connect(user, conn);
      expected.emplace(user, conn);
    }
  }
  for (uint32_t page_size : {1u, 2u, 4u, 7u, 20u, 21u, 22u}) {
    std::vector<std::pair<std::string, std::string>> seen;
    std::string token;
    int pages = 0;
    do {
      v1::ListClientsResponse res;
      ASSERT_TRUE(List("", page_size, token, &res).ok()) << page_size;
      EXPECT_EQ(res.total(), 21u);
      EXPECT_LE(res.clients_size(), static_cast<int>(page_size));
      for (const auto& c : res.clients()) seen.emplace_back(c.user_id(), c.connection_id());
      token = res.next_page_token();
      ASSERT_LT(++pages, 100) << "paging does not end";
    } while (!token.empty());
    EXPECT_EQ(seen.size(), expected.size()) << "page_size " << page_size;
    EXPECT_EQ(std::set(seen.begin(), seen.end()), expected) << "page_size " << page_size;
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end())) << "page_size " << page_size;
    EXPECT_EQ(pages, (21 + static_cast<int>(page_size) - 1) / static_cast<int>(page_size))
        << "page_size " << page_size;
  }
}

TEST_F(PushLogicTest, PagingStaysConsistentWhileConnectionsComeAndGo) {
  std::vector<std::shared_ptr<RecordingConnection>> conns;
  for (int i = 0; i < 6; ++i) conns.push_back(Connect("user" + std::to_string(i), "c"));
  v1::ListClientsResponse first;
  ASSERT_TRUE(List("", 2, "", &first).ok());
  ASSERT_EQ(first.clients_size(), 2);
  // The last listed connection leaves and an earlier one arrives before the next page.
  hub_.Remove(*conns[1]);
  Connect("user0", "b");
  v1::ListClientsResponse second;
  ASSERT_TRUE(List("", 2, first.next_page_token(), &second).ok());
  ASSERT_EQ(second.clients_size(), 2);
  EXPECT_EQ(second.clients(0).user_id(), "user2");
  EXPECT_EQ(second.clients(1).user_id(), "user3");
}

TEST_F(PushLogicTest, DefaultPageSizeIs100) {
  for (int i = 0; i < 150; ++i) Connect("user" + std::to_string(1000 + i), "c");
  v1::ListClientsResponse res;
  ASSERT_TRUE(List("", 0, "", &res).ok());
  EXPECT_EQ(res.clients_size(), 100);
  EXPECT_EQ(res.total(), 150u);
  EXPECT_FALSE(res.next_page_token().empty());
  v1::ListClientsResponse rest;
  ASSERT_TRUE(List("", 0, res.next_page_token(), &rest).ok());
  EXPECT_EQ(rest.clients_size(), 50);
  EXPECT_TRUE(rest.next_page_token().empty());
}

TEST(ToGrpcStatusTest, CodesAndMessagesMapOneToOne) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError("bad user"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "bad user");
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("x")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(absl::UnavailableError("x")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ToGrpcStatus(absl::UnauthenticatedError("x")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("x")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

}  // namespace
}  // namespace push::service
