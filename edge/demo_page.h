#pragma once

#include <string_view>

namespace push::edge {

// A static file served by the edge: the demo page and the JavaScript client, embedded in the
// binary at build time from edge/web/ and clients/js/ (see edge/CMakeLists.txt).
struct WebAsset {
  std::string_view content_type;
  std::string_view body;
};

// The asset served at `path` ("/" or "/pushclient.js"), or nullptr.
const WebAsset* FindWebAsset(std::string_view path);

}  // namespace push::edge
