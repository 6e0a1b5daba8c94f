// --grpc_default_deadline: a unary call that brings no deadline ends with DEADLINE_EXCEEDED when
// its handler has not answered in time. The in-memory store answers at once, so these tests put
// PushServiceImpl on a real in-process gRPC server over a store whose appends answer only when
// the test says (as a networked store might).

#include <grpcpp/create_channel.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/base/metrics.h"
#include "common/delivery/directory.h"
#include "common/delivery/hub.h"
#include "common/delivery/memory_store.h"
#include "gtest/gtest.h"
#include "services/push_service.h"
#include "tests/testing/test_util.h"

namespace push::service {
namespace {

using std::chrono::steady_clock;

// Appends wait until Release(); everything else goes to a real MemoryStore.
class HeldStore final : public store::Store {
 public:
  void Append(store::AppendRequest request,
              absl::AnyInvocable<void(absl::StatusOr<store::AppendResult>)> done) override {
    absl::MutexLock lock(&mu_);
    held_.push_back({std::move(request), std::move(done)});
  }
  void Read(store::ReadRequest request,
            absl::AnyInvocable<void(absl::StatusOr<store::ReadResult>)> done) override {
    memory_.Read(std::move(request), std::move(done));
  }
  void Advance(std::string_view user_id, std::string_view device_id, uint64_t seq,
               store::Progress progress) override {
    memory_.Advance(user_id, device_id, seq, progress);
  }
  void TouchDevice(std::string_view user_id, std::string_view device_id) override {
    memory_.TouchDevice(user_id, device_id);
  }
  void Receipts(store::ReceiptsRequest request,
                absl::AnyInvocable<void(absl::StatusOr<store::ReceiptsResult>)> done) override {
    memory_.Receipts(std::move(request), std::move(done));
  }
  void Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) override {
    memory_.Purge(user_id, std::move(done));
  }

  size_t held() {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  // Lets every held append through to the real store (answering their calls, late or not).
  void Release() {
    std::vector<Held> held;
    {
      absl::MutexLock lock(&mu_);
      held.swap(held_);
    }
    for (Held& h : held) memory_.Append(std::move(h.request), std::move(h.done));
  }

 private:
  struct Held {
    store::AppendRequest request;
    absl::AnyInvocable<void(absl::StatusOr<store::AppendResult>)> done;
  };
  store::MemoryStore memory_{store::MemoryStoreOptions{}};
  absl::Mutex mu_;
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
};

class DefaultDeadlineTest : public ::testing::Test {
 protected:
  static constexpr absl::Duration kDefaultDeadline = absl::Milliseconds(300);

  DefaultDeadlineTest()
      : logic_(PushOptions{.node_id = "node-a"}, &store_, &directory_),
        service_(&logic_, nullptr, kDefaultDeadline) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    service_.Register(&builder, 1);
    server_ = builder.BuildAndStart();
    service_.Start();
    stub_ = v1::PushService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                                         grpc::InsecureChannelCredentials()));
  }

  ~DefaultDeadlineTest() override {
    store_.Release();  // nothing stays held past the test
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    service_.Stop();
  }

  // Push with the client's own deadline, or none.
  grpc::Status Push(const std::string& user, v1::PushResponse* response,
                    std::optional<std::chrono::milliseconds> deadline = std::nullopt) {
    grpc::ClientContext ctx;
    if (deadline) ctx.set_deadline(std::chrono::system_clock::now() + *deadline);
    v1::PushRequest request;
    request.set_user_id(user);
    request.set_data(R"({"n":1})");
    return stub_->Push(&ctx, request, response);
  }

  HeldStore store_;
  Hub hub_;
  LocalDirectory directory_{&hub_, "node-a"};
  PushLogic logic_;
  PushServiceImpl service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::PushService::Stub> stub_;
};

TEST_F(DefaultDeadlineTest, CallWithoutDeadlineEndsWithDeadlineExceeded) {
  ASSERT_NE(port_, 0);
  uint64_t before = GlobalMetrics().grpc_default_deadline_exceeded.load();
  auto start = steady_clock::now();
  v1::PushResponse response;
  grpc::Status status = Push("alice", &response);  // no deadline: the handler never answers
  auto took = steady_clock::now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("--grpc_default_deadline"), std::string::npos)
      << status.error_message();
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_EQ(GlobalMetrics().grpc_default_deadline_exceeded.load(), before + 1);
  // gRPC is done with the call (the drain counts on that) once the status is out.
  push::testing::WaitFor([&] { return service_.inflight() == 0; }, std::chrono::seconds(2));
  EXPECT_EQ(service_.inflight(), 0);

  // The store answers after the call is over: the late answer goes nowhere, harmlessly.
  ASSERT_EQ(store_.held(), 1u);
  store_.Release();
  // Calls answered inline are unaffected.
  grpc::ClientContext ctx;
  v1::ListClientsResponse list;
  EXPECT_TRUE(stub_->ListClients(&ctx, v1::ListClientsRequest(), &list).ok());
}

TEST_F(DefaultDeadlineTest, AnswerBeforeTheDefaultDeadlineReachesTheCaller) {
  v1::PushResponse response;
  grpc::Status status;
  std::thread call([&] { status = Push("bob", &response); });
  push::testing::WaitFor([&] { return store_.held() > 0; }, std::chrono::seconds(5));
  store_.Release();
  call.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.seq(), 1u);  // what the handler wrote is what the caller got
  EXPECT_FALSE(response.message_id().empty());
}

TEST_F(DefaultDeadlineTest, ACallersOwnDeadlineIsKept) {
  uint64_t before = GlobalMetrics().grpc_default_deadline_exceeded.load();
  // Longer than the default: the caller's deadline governs, not the default.
  auto start = steady_clock::now();
  v1::PushResponse response;
  grpc::Status status = Push("carol", &response, std::chrono::milliseconds(1500));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_GE(steady_clock::now() - start, std::chrono::milliseconds(1400));
  EXPECT_EQ(GlobalMetrics().grpc_default_deadline_exceeded.load(), before);

  // Shorter than the default, and answered in time: fine.
  std::thread release([&] {
    push::testing::WaitFor([&] { return store_.held() >= 2; }, std::chrono::seconds(5));
    store_.Release();
  });
  status = Push("carol", &response, std::chrono::milliseconds(5000));
  release.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace push::service
