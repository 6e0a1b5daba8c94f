#include "common/base/ids.h"

#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace push {
namespace {

TEST(ValidateUserIdTest, AcceptsLettersDigitsAndEveryAllowedPunctuation) {
  EXPECT_TRUE(ValidateUserId("alice").ok());
  EXPECT_TRUE(ValidateUserId("A").ok());
  EXPECT_TRUE(ValidateUserId("0123456789").ok());
  for (const char* id : {"a.b", "a_b", "a:b", "a@b", "a-b", "user@example.com", "tenant:42-x_y.z",
                         ".", "_", ":", "@", "-"}) {
    EXPECT_TRUE(ValidateUserId(id).ok()) << id;
  }
}

TEST(ValidateUserIdTest, RejectsEmpty) {
  absl::Status s = ValidateUserId("");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("empty"), std::string::npos) << s;
}

TEST(ValidateUserIdTest, AcceptsExactly128BytesAndRejects129) {
  EXPECT_TRUE(ValidateUserId(std::string(128, 'u')).ok());
  absl::Status s = ValidateUserId(std::string(129, 'u'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("129"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("128"), std::string::npos) << s;
}

TEST(ValidateUserIdTest, RejectsCharactersOutsideTheAllowedSet) {
  for (const char* id : {"a b", "a/b", "a%40b", "\xc3\xa9", "caf\xc3\xa9", "a\"b", "a\\b", "a\nb",
                         "a+b", "a?b", "a&b", "a=b", "a#b", "a,b", "\t", "a\x7f"}) {
    absl::Status s = ValidateUserId(id);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "'" << id << "'";
  }
  // An embedded NUL must not end the check early.
  EXPECT_EQ(ValidateUserId(std::string("ab\0c", 4)).code(), absl::StatusCode::kInvalidArgument);
  absl::Status s = ValidateUserId("a b");
  EXPECT_NE(std::string(s.message()).find("letters, digits"), std::string::npos) << s;
}

TEST(ValidateMessageIdTest, AcceptsEmptyAndPrintableAscii) {
  EXPECT_TRUE(ValidateMessageId("").ok());  // empty means the server makes one
  EXPECT_TRUE(ValidateMessageId("order-42/line:7?x=y&z#!~").ok());
  EXPECT_TRUE(ValidateMessageId(std::string(128, 'm')).ok());
}

TEST(ValidateMessageIdTest, RejectsTooLongSpacesQuotesBackslashesAndNonAscii) {
  absl::Status s = ValidateMessageId(std::string(129, 'm'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("129"), std::string::npos) << s;
  for (const char* id : {"a b", "a\"b", "a\\b", "a\tb", "a\nb", "caf\xc3\xa9", "\x7f"}) {
    EXPECT_EQ(ValidateMessageId(id).code(), absl::StatusCode::kInvalidArgument) << id;
  }
  EXPECT_EQ(ValidateMessageId(std::string("a\0b", 3)).code(), absl::StatusCode::kInvalidArgument);
}

bool IsLowerHex(const std::string& s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

TEST(NewIdTest, ConnectionIdsAreUnique20CharHex) {
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    std::string id = NewConnectionId();
    ASSERT_EQ(id.size(), 20u) << id;
    ASSERT_TRUE(IsLowerHex(id)) << id;
    ASSERT_TRUE(seen.insert(id).second) << "duplicate connection id " << id << " after " << i;
  }
}

TEST(NewIdTest, MessageIdsAreUnique24CharHexAndValidMessageIds) {
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    std::string id = NewMessageId();
    ASSERT_EQ(id.size(), 24u) << id;
    ASSERT_TRUE(IsLowerHex(id)) << id;
    ASSERT_TRUE(ValidateMessageId(id).ok()) << id;
    ASSERT_TRUE(seen.insert(id).second) << "duplicate message id " << id << " after " << i;
  }
}

TEST(NewIdTest, SeqMessageIdsSpellTheirSeqAndAreValidMessageIds) {
  std::unordered_set<std::string> seen;
  for (uint64_t seq : {uint64_t{1}, uint64_t{42}, kSeqMessageIdMask, kSeqMessageIdMask + 5}) {
    for (int i = 0; i < 1000; ++i) {
      std::string id = NewSeqMessageId(seq);
      ASSERT_EQ(id.size(), 24u) << id;
      ASSERT_TRUE(IsLowerHex(id)) << id;
      ASSERT_TRUE(ValidateMessageId(id).ok()) << id;
      ASSERT_EQ(SeqOfMessageId(id), seq & kSeqMessageIdMask) << id;
      ASSERT_TRUE(seen.insert(id).second) << "duplicate message id " << id;
    }
  }
  EXPECT_EQ(SeqOfMessageId("00000000000000000000002a"), 42u);
  // Any other shape names no seq: another length, upper case, a non-hex digit.
  EXPECT_EQ(SeqOfMessageId("0000000000000000000002a"), std::nullopt);
  EXPECT_EQ(SeqOfMessageId("00000000000000000000002A"), std::nullopt);
  EXPECT_EQ(SeqOfMessageId("g0000000000000000000002a"), std::nullopt);
  EXPECT_EQ(SeqOfMessageId("order-42"), std::nullopt);
}

TEST(NewIdTest, IdsMadeOnSeveralThreadsDoNotCollide) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2500;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&ids, t] {
      for (int i = 0; i < kPerThread; ++i) ids[t].push_back(NewConnectionId());
    });
  }
  for (auto& th : threads) th.join();
  std::unordered_set<std::string> seen;
  for (const auto& list : ids) {
    for (const auto& id : list) EXPECT_TRUE(seen.insert(id).second) << id;
  }
  EXPECT_EQ(seen.size(), size_t{kThreads * kPerThread});
}

}  // namespace
}  // namespace push
