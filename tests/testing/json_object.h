#pragma once

// Reading the JSON objects pushd writes (frames, HTTP bodies) in tests.

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace push::testing {

// The object `text` holds; an empty one (and a test failure) if it is not an object.
inline boost::json::object ParseObject(const std::string& text) {
  boost::json::value v = boost::json::parse(text);
  EXPECT_TRUE(v.is_object()) << text;
  return v.is_object() ? v.as_object() : boost::json::object();
}

// Its keys, in the order written.
inline std::vector<std::string> Keys(const boost::json::object& o) {
  std::vector<std::string> keys;
  for (const auto& kv : o) keys.emplace_back(kv.key());
  return keys;
}

}  // namespace push::testing
