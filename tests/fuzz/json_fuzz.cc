// libFuzzer target for the JSON code behind Push and the frames: ValidateJson (every pushed
// `data`), IsValidUtf8 (DeleteClient reasons), AppendJsonString (every string the server puts in
// a frame or an error body) and the /ws frame encoders. The input is one candidate text. Aborts
// when:
//   - ValidateJson disagrees with Boost.JSON's DOM parser (same depth limit) on the same text, or
//     accepts text that is not UTF-8;
//   - IsValidUtf8 disagrees with a table-driven reference decoder (Unicode 15, table 3-7);
//   - AppendJsonString's output, for UTF-8 input, is not one JSON string that parses back to the
//     input (or, for other input, is accepted as JSON);
//   - a message frame built around accepted data is not the fixed header, the data byte for byte
//     and '}', or does not parse as JSON with the header's fields; or a welcome frame does not
//     carry its ids verbatim.

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "common/delivery/message.h"
#include "common/json/json.h"
#include "edge/wire_frames.h"

namespace {

namespace json = boost::json;

// Well-formed UTF-8 per the Unicode standard's table 3-7: the allowed range of each byte after a
// lead byte, so overlongs, surrogates and code points past U+10FFFF are refused by construction.
bool ReferenceUtf8(std::string_view s) {
  size_t i = 0;
  auto in = [&](size_t k, unsigned lo, unsigned hi) {
    if (i + k >= s.size()) return false;
    auto b = static_cast<unsigned char>(s[i + k]);
    return b >= lo && b <= hi;
  };
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t n;
    if (b <= 0x7F) {
      n = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      if (!in(1, 0x80, 0xBF)) return false;
      n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      unsigned lo = b == 0xE0 ? 0xA0 : 0x80;
      unsigned hi = b == 0xED ? 0x9F : 0xBF;
      if (!in(1, lo, hi) || !in(2, 0x80, 0xBF)) return false;
      n = 3;
    } else if (b >= 0xF0 && b <= 0xF4) {
      unsigned lo = b == 0xF0 ? 0x90 : 0x80;
      unsigned hi = b == 0xF4 ? 0x8F : 0xBF;
      if (!in(1, lo, hi) || !in(2, 0x80, 0xBF) || !in(3, 0x80, 0xBF)) return false;
      n = 4;
    } else {
      return false;
    }
    i += n;
  }
  return true;
}

// A frame nests the pushed data one level deeper than ValidateJson's limit allows for the data:
// read frames with room to spare.
json::value ParseOrAbort(std::string_view text) {
  json::parse_options options;
  options.max_depth = 128;
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, options);
  if (ec) std::abort();
  return v;
}

json::string_view Json(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool utf8 = ReferenceUtf8(text);
  if (push::IsValidUtf8(text) != utf8) std::abort();

  absl::Status valid = push::ValidateJson(text);
  json::parse_options options;
  options.max_depth = 64;  // ValidateJson's limit
  boost::system::error_code ec;
  json::value dom = json::parse(Json(text), ec, {}, options);
  if (valid.ok() == static_cast<bool>(ec)) std::abort();
  if (valid.ok() && !utf8) std::abort();
  if (!valid.ok() && valid.message().empty()) std::abort();

  std::string quoted;
  push::AppendJsonString(&quoted, text);
  for (char c : quoted) {
    if (static_cast<unsigned char>(c) < 0x20) std::abort();
  }
  if (push::ValidateJson(quoted).ok() != utf8) std::abort();
  if (utf8) {
    json::value back = ParseOrAbort(quoted);
    if (!back.is_string() || back.get_string() != Json(text)) std::abort();

    std::string welcome = push::edge::EncodeWelcome(text, text, size);
    json::value w = ParseOrAbort(welcome);
    if (w.at("type") != "welcome" || w.at("connection_id") != Json(text) ||
        w.at("user_id") != Json(text) || w.at("seq") != size) {
      std::abort();
    }
  }

  if (valid.ok()) {
    // The stored message's frame: a header encoded once, then the pushed data verbatim. The data
    // is checked as bytes (pushd never reads it as numbers); Boost.JSON 1.81 does not always read
    // the same digits to the same double in two parses, so comparing parsed values would fail
    // by chance.
    push::MessagePtr m = push::MakeMessage(42, "fuzz-id", absl::FromUnixMillis(1'700'000'000'000),
                                           absl::InfiniteFuture(), text);
    std::string frame = m->Frame();
    constexpr std::string_view kHeader =
        R"({"type":"message","seq":42,"id":"fuzz-id","ts":1700000000000,"data":)";
    if (frame.size() != m->FrameSize() || frame.size() != kHeader.size() + size + 1 ||
        std::string_view(frame).substr(0, kHeader.size()) != kHeader ||
        std::string_view(frame).substr(kHeader.size(), size) != text || frame.back() != '}') {
      std::abort();
    }
    json::value f = ParseOrAbort(frame);
    if (!f.is_object() || f.get_object().size() != 5 || f.at("type") != "message" ||
        f.at("seq") != 42 || f.at("id") != "fuzz-id" || f.at("ts") != 1'700'000'000'000) {
      std::abort();
    }
  }
  return 0;
}
