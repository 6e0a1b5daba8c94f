#pragma once

// Small text helpers for building inputs and checking outputs.

#include <cstddef>
#include <string>

namespace push::testing {

inline bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A JSON string of `n` copies of `c`: n + 2 bytes with the quotes.
inline std::string JsonString(size_t n, char c) {
  std::string s(n + 2, c);
  s.front() = '"';
  s.back() = '"';
  return s;
}

}  // namespace push::testing
