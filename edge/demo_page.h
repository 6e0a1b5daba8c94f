#pragma once

#include <string_view>

namespace push::edge {

// The small page served at GET /: connects to /ws and shows what arrives.
std::string_view DemoPageHtml();

}  // namespace push::edge
