#include "common/base/write_batch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace push {
namespace {

TEST(WriteBatchTest, NoBatchOutsideAScopeAndNoneOnOtherThreads) {
  EXPECT_EQ(WriteBatch::Current(), nullptr);
  EXPECT_FALSE(WriteBatch::Corking());
  {
    WriteBatch::Scope scope;
    EXPECT_EQ(WriteBatch::Current(), &scope.batch());
    std::thread([] {
      EXPECT_EQ(WriteBatch::Current(), nullptr);
      WriteBatch::Cork cork;  // without a batch of its own a thread never corks
      EXPECT_FALSE(WriteBatch::Corking());
    }).join();
  }
  EXPECT_EQ(WriteBatch::Current(), nullptr);
}

TEST(WriteBatchTest, WritesGoBeforeAnswersAndWhatTheyDeferRunsInTheSameFlush) {
  std::vector<std::string> order;
  WriteBatch::Scope scope;
  WriteBatch& batch = scope.batch();
  batch.DeferAnswer([&] {
    order.push_back("answer 1");
    // An answer that writes again: its write runs in this flush, after the answers of its round.
    batch.DeferWrite([&] { order.push_back("write 3"); });
    batch.DeferAnswer([&] { order.push_back("answer 3"); });
  });
  batch.DeferWrite([&] {
    order.push_back("write 1");
    batch.DeferWrite([&] { order.push_back("write 2"); });
  });
  batch.DeferAnswer([&] { order.push_back("answer 2"); });
  EXPECT_FALSE(batch.empty());
  EXPECT_TRUE(order.empty()) << "nothing runs before the flush";
  batch.Flush();
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(order, (std::vector<std::string>{"write 1", "write 2", "answer 1", "answer 2",
                                             "write 3", "answer 3"}));
}

TEST(WriteBatchTest, SeveralAnswersAreCorkedAndALoneOneIsNot) {
  WriteBatch::Scope scope;
  WriteBatch& batch = scope.batch();
  std::vector<bool> corked;
  batch.DeferWrite([&] { corked.push_back(WriteBatch::Corking()); });
  batch.DeferAnswer([&] { corked.push_back(WriteBatch::Corking()); });
  batch.DeferAnswer([&] { corked.push_back(WriteBatch::Corking()); });
  batch.Flush();
  EXPECT_EQ(corked, (std::vector<bool>{false, true, true}));
  EXPECT_FALSE(WriteBatch::Corking());

  corked.clear();
  batch.DeferAnswer([&] { corked.push_back(WriteBatch::Corking()); });
  batch.Flush();
  EXPECT_EQ(corked, (std::vector<bool>{false}));

  {
    WriteBatch::Cork cork;
    EXPECT_TRUE(WriteBatch::Corking());
  }
  EXPECT_FALSE(WriteBatch::Corking());
}

// A connected loopback TCP pair: {writer, reader}.
std::pair<int, int> TcpPair() {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(listener);
    return {-1, -1};
  }
  int reader = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(reader, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(listener);
    close(reader);
    return {-1, -1};
  }
  int writer = accept(listener, nullptr, nullptr);
  close(listener);
  int one = 1;
  setsockopt(writer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return {writer, reader};
}

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

// What pushd's sendmsg does while corking (services/cork_sendmsg.cc), with send(): the bytes wait
// in the kernel until the flush pushes the socket out. (Without the flush the kernel sends them
// when its probe timer fires, at least 200 ms later: a flush that ran within 150 ms of the write
// must bring them well before that.)
TEST(WriteBatchTest, TheFlushPushesOutWhatACorkedWriteHeldBack) {
  auto [writer, reader] = TcpPair();
  ASSERT_GE(writer, 0);
  {
    WriteBatch::Scope scope;
    auto sent = std::chrono::steady_clock::now();
    {
      WriteBatch::Cork cork;
      ASSERT_TRUE(WriteBatch::Corking());
      ASSERT_EQ(send(writer, "answer", 6, MSG_MORE), 6);
      WriteBatch::Corked(writer);
      WriteBatch::Corked(writer);  // reported twice, pushed once
    }
    EXPECT_FALSE(scope.batch().empty()) << "a corked socket waits for the flush";
    bool early = Readable(reader, 50);
    scope.batch().Flush();
    auto flushed = std::chrono::steady_clock::now();
    bool prompt = Readable(reader, 40);
    EXPECT_TRUE(scope.batch().empty());
    if (flushed - sent < std::chrono::milliseconds(150)) {
      EXPECT_FALSE(early) << "MSG_MORE held nothing back";
      EXPECT_TRUE(prompt) << "the flush did not push the corked write out";
    }
  }
  ASSERT_TRUE(Readable(reader, 5000));
  char buffer[16];
  EXPECT_EQ(recv(reader, buffer, sizeof buffer, 0), 6);
  EXPECT_EQ(std::string(buffer, 6), "answer");
  close(writer);
  close(reader);
}

// The scope's end flushes too (a completion-queue thread that stops sends what waited).
TEST(WriteBatchTest, TheScopesEndFlushes) {
  auto [writer, reader] = TcpPair();
  ASSERT_GE(writer, 0);
  bool ran = false;
  {
    WriteBatch::Scope scope;
    scope.batch().DeferAnswer([&] { ran = true; });
    WriteBatch::Cork cork;
    ASSERT_EQ(send(writer, "x", 1, MSG_MORE), 1);
    WriteBatch::Corked(writer);
  }
  EXPECT_TRUE(ran);
  EXPECT_TRUE(Readable(reader, 5000));
  close(writer);
  close(reader);
}

}  // namespace
}  // namespace push
