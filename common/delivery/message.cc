#include "common/delivery/message.h"

#include "absl/strings/str_cat.h"
#include "common/base/metrics.h"
#include "common/json/json.h"

namespace push {

MessagePtr MakeMessage(uint64_t seq, std::string id, absl::Time now, absl::Time expires_at,
                       std::shared_ptr<const std::string> payload) {
  auto m = std::make_shared<Message>();
  m->seq = seq;
  m->ts_ms = absl::ToUnixMillis(now);
  m->appended_ns = Metrics::NowNanos();
  m->expires_at = expires_at;
  m->id = std::move(id);
  std::string& h = m->header;
  h.reserve(m->id.size() + 80);
  absl::StrAppend(&h, R"({"type":"message","seq":)", seq, R"(,"id":)");
  AppendJsonString(&h, m->id);
  absl::StrAppend(&h, R"(,"ts":)", m->ts_ms, R"(,"data":)");
  m->payload = std::move(payload);
  return m;
}

}  // namespace push
