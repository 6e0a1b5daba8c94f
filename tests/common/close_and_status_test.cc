// The two small tables every close and every HTTP answer go through.

#include <string>

#include "common/base/close.h"
#include "common/base/http_status.h"
#include "gtest/gtest.h"

namespace push {
namespace {

TEST(HttpStatusTest, EachCodeHasItsHttpStatus) {
  EXPECT_EQ(HttpStatusOf(absl::OkStatus()), 200);
  EXPECT_EQ(HttpStatusOf(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusOf(absl::FailedPreconditionError("x")), 400);
  EXPECT_EQ(HttpStatusOf(absl::UnauthenticatedError("x")), 401);
  EXPECT_EQ(HttpStatusOf(absl::PermissionDeniedError("x")), 403);
  EXPECT_EQ(HttpStatusOf(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusOf(absl::ResourceExhaustedError("x")), 429);
  EXPECT_EQ(HttpStatusOf(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusOf(absl::DeadlineExceededError("x")), 504);
  EXPECT_EQ(HttpStatusOf(absl::InternalError("x")), 500);
}

TEST(DisconnectTest, EveryReasonHasAMetricLabelAndWords) {
  for (int i = 0; i < kDisconnectCount; ++i) {
    auto why = static_cast<Disconnect>(i);
    std::string label(DisconnectLabel(why));
    EXPECT_TRUE(label == "client" || label == "deleted" || label == "shutdown" ||
                label == "slow_consumer" || label == "pong_timeout" || label == "protocol" ||
                label == "error")
        << i << ": " << label;
    EXPECT_NE(DisconnectText(why), "unknown") << i;
  }
  EXPECT_EQ(DisconnectLabel(Disconnect::kConnectionLost), "client");
  EXPECT_EQ(DisconnectLabel(Disconnect::kToken), "protocol");
  EXPECT_EQ(DisconnectText(Disconnect::kPongTimeout), "pong timeout");
}

}  // namespace
}  // namespace push
