#include "edge/demo_page.h"

namespace push::edge {
namespace embedded {
// Defined in the generated web_assets.cc.
std::string_view IndexHtml();
std::string_view PushClientJs();
}  // namespace embedded

const WebAsset* FindWebAsset(std::string_view path) {
  static const WebAsset kIndex{"text/html; charset=utf-8", embedded::IndexHtml()};
  static const WebAsset kClient{"text/javascript; charset=utf-8", embedded::PushClientJs()};
  if (path == "/") return &kIndex;
  if (path == "/pushclient.js") return &kClient;
  return nullptr;
}

}  // namespace push::edge
