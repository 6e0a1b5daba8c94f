// libFuzzer target for the client-frame parser (ParseClientFrame): the text of every frame a
// client sends on /ws, at most 4096 bytes (the session's read_message_max). Aborts when:
//   - the verdict differs from an independent reading of the frame with Boost.JSON's DOM (an ack
//     with a non-negative integer seq, or a refresh with a string token; nothing else);
//   - a refused frame's error would not fit a WebSocket close reason (123 bytes) or is empty;
//   - an accepted frame does not round-trip: its canonical encoding parses to the same frame.

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/json/json.h"
#include "edge/wire_frames.h"

namespace {

constexpr size_t kMaxFrameBytes = 4096;
constexpr size_t kMaxCloseReasonBytes = 123;

// What the frame should be, read without ParseClientFrame.
struct Expected {
  bool ok = false;
  push::edge::ClientFrame frame;
};

Expected Reference(std::string_view text) {
  Expected e;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(boost::json::string_view(text.data(), text.size()), ec);
  if (ec || !v.is_object()) return e;
  const boost::json::object& obj = v.get_object();
  auto type = obj.find("type");
  if (type == obj.end() || !type->value().is_string()) return e;
  std::string_view t(type->value().get_string().data(), type->value().get_string().size());
  if (t == "refresh") {
    auto token = obj.find("token");
    if (token == obj.end() || !token->value().is_string()) return e;
    e.frame.type = push::edge::ClientFrame::Type::kRefresh;
    e.frame.token.assign(token->value().get_string().data(), token->value().get_string().size());
    e.ok = true;
  } else if (t == "ack") {
    auto seq = obj.find("seq");
    if (seq == obj.end()) return e;
    const boost::json::value& s = seq->value();
    if (s.is_uint64()) {
      e.frame.seq = s.get_uint64();
    } else if (s.is_int64() && s.get_int64() >= 0) {
      e.frame.seq = static_cast<uint64_t>(s.get_int64());
    } else {
      return e;
    }
    e.frame.type = push::edge::ClientFrame::Type::kAck;
    e.ok = true;
  }
  return e;
}

bool Same(const push::edge::ClientFrame& a, const push::edge::ClientFrame& b) {
  if (a.type != b.type) return false;
  return a.type == push::edge::ClientFrame::Type::kAck ? a.seq == b.seq : a.token == b.token;
}

std::string Canonical(const push::edge::ClientFrame& f) {
  if (f.type == push::edge::ClientFrame::Type::kAck) {
    return absl::StrCat(R"({"type":"ack","seq":)", f.seq, "}");
  }
  std::string out = R"({"type":"refresh","token":)";
  push::AppendJsonString(&out, f.token);
  out.push_back('}');
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxFrameBytes) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  push::edge::ClientFrame frame;
  std::string error;
  bool ok = push::edge::ParseClientFrame(text, &frame, &error);
  Expected expected = Reference(text);
  if (ok != expected.ok) std::abort();
  if (!ok) {
    if (error.empty() || error.size() > kMaxCloseReasonBytes) std::abort();
    return 0;
  }
  if (!Same(frame, expected.frame)) std::abort();
  push::edge::ClientFrame again;
  std::string again_error;
  if (!push::edge::ParseClientFrame(Canonical(frame), &again, &again_error) ||
      !Same(frame, again)) {
    std::abort();
  }
  return 0;
}
