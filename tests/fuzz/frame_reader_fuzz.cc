// libFuzzer target for FrameReader, the reader of a plain connection's client frames: the bytes a
// client sends after its upgrade, as they come off the socket. The first input byte picks how the
// rest is cut into reads. Aborts when:
//   - the events differ between one read of everything, reads of the chosen sizes, and reads of
//     one byte (a socket may cut the stream anywhere);
//   - a text message is not UTF-8, a message is over the limit, a ping or pong payload is over
//     125 bytes, a close code is not one a close frame may carry, or a failure's code is not
//     1002, 1007 or 1009;
//   - anything is reported after a close or a failure.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/json/json.h"
#include "edge/frame_reader.h"

namespace {

constexpr uint32_t kLimit = 4096;

using push::edge::FrameReader;
using Kind = FrameReader::Event::Kind;

void Check(bool ok) {
  if (!ok) std::abort();
}

std::vector<std::string> Read(const uint8_t* data, size_t size, size_t piece) {
  FrameReader reader(kLimit);
  std::vector<std::string> events;
  bool ended = false;
  for (size_t at = 0; at < size; at += piece) {
    std::vector<uint8_t> bytes(data + at, data + std::min(size, at + piece));
    reader.Feed(bytes.data(), bytes.size(), [&](const FrameReader::Event& e) {
      Check(!ended);
      switch (e.kind) {
        case Kind::kText:
          Check(push::IsValidUtf8(e.payload));
          Check(e.payload.size() <= kLimit);
          break;
        case Kind::kBinary:
          Check(e.payload.size() <= kLimit);
          break;
        case Kind::kPing:
        case Kind::kPong:
          Check(e.payload.size() <= 125);
          break;
        case Kind::kClose:
          Check(e.code == 0 || push::edge::IsValidCloseCode(e.code));
          Check(e.payload.size() <= 123 && push::IsValidUtf8(e.payload));
          ended = true;
          break;
        case Kind::kFail:
          Check(e.code == 1002 || e.code == 1007 || e.code == 1009);
          ended = true;
          break;
      }
      events.push_back(std::to_string(static_cast<int>(e.kind)) + ":" + std::to_string(e.code) +
                       ":" + std::string(e.payload));
    });
    Check(reader.done() == ended);
  }
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 64;
  ++data;
  --size;
  std::vector<std::string> whole = Read(data, size, size == 0 ? 1 : size);
  Check(Read(data, size, piece) == whole);
  Check(Read(data, size, 1) == whole);
  return 0;
}
