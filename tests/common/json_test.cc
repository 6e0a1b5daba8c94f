#include "common/json/json.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace push {
namespace {

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(ValidateJsonTest, AcceptsEveryKindOfScalar) {
  for (const char* text : {"0", "-1", "3.25", "1e10", "-0.5E-3", "18446744073709551615", "true",
                           "false", "null", "\"\"", "\"text\"", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
                           "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9\""}) {
    absl::Status s = ValidateJson(text);
    EXPECT_TRUE(s.ok()) << text << ": " << s;
  }
}

TEST(ValidateJsonTest, AcceptsObjectsArraysAndNesting) {
  for (const char* text :
       {"{}", "[]", R"({"a":1})", R"([1,"two",null,true,{"x":[{}]}])",
        R"({"user":{"name":"al","tags":["a","b"],"n":{"m":{"o":[1,[2,[3]]]}}}})"}) {
    absl::Status s = ValidateJson(text);
    EXPECT_TRUE(s.ok()) << text << ": " << s;
  }
}

TEST(ValidateJsonTest, AcceptsSurroundingWhitespace) {
  EXPECT_TRUE(ValidateJson("  {\"a\": [1, 2]}\n").ok());
  EXPECT_TRUE(ValidateJson("\t\r\n 42 \t\r\n").ok());
  EXPECT_TRUE(ValidateJson(" \"s\" ").ok());
}

TEST(ValidateJsonTest, RejectsEmptyAndWhitespaceOnly) {
  absl::Status empty = ValidateJson("");
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(empty.message()).find("empty"), std::string::npos) << empty;
  EXPECT_EQ(ValidateJson("   ").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateJsonTest, RejectsMoreThanOneValueOrTrailingGarbage) {
  for (const char* text : {"1 2", "{}x", "{}{}", "[] []", "\"a\"\"b\"", "null,", "true false", "1]",
                           "{} // comment"}) {
    absl::Status s = ValidateJson(text);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

TEST(ValidateJsonTest, RejectsUnterminatedAndMalformedDocuments) {
  for (const char* text :
       {"{",   "[",   "[1,",      R"({"a":)", R"({"a")",       "\"abc",    "tru",
        "nul", "-",   "1.",       "{'a':1}",  "{a:1}",         "[1,]",     R"({"a":1,})",
        "01",  "NaN", "Infinity", "+1",       "\"tab\there\"", "undefined"}) {
    absl::Status s = ValidateJson(text);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

TEST(ValidateJsonTest, RejectsInvalidUtf8InsideStrings) {
  for (const char* text : {"\"\xff\"", "\"\xc3\"", "\"\xc3(\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
                           "\"\xf4\x90\x80\x80\"", "{\"k\xfe\":1}", "[\"ok\",\"\xe2\x82\"]"}) {
    absl::Status s = ValidateJson(text);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

TEST(ValidateJsonTest, AcceptsDepth64AndRejectsDepth65) {
  EXPECT_TRUE(ValidateJson(Nested(64)).ok());
  EXPECT_EQ(ValidateJson(Nested(65)).code(), absl::StatusCode::kInvalidArgument);
  std::string objects;
  for (int i = 0; i < 65; ++i) objects += "{\"a\":";
  objects += "1" + std::string(65, '}');
  EXPECT_EQ(ValidateJson(objects).code(), absl::StatusCode::kInvalidArgument);
  // Deep input must not overflow the stack either.
  EXPECT_EQ(ValidateJson(Nested(100000)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateJsonTest, ErrorMessageSaysWhatAndWhere) {
  absl::Status s = ValidateJson("[1,2,x]");
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  std::string message(s.message());
  EXPECT_NE(message.find("not one valid JSON value"), std::string::npos) << message;
  EXPECT_NE(message.find("near byte 5"), std::string::npos) << message;

  s = ValidateJson("{} x");
  message = std::string(s.message());
  EXPECT_NE(message.find("not one valid JSON value"), std::string::npos) << message;
  EXPECT_NE(message.find("near byte 3"), std::string::npos) << message;
}

std::string Quoted(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

TEST(AppendJsonStringTest, QuotesAndEscapes) {
  EXPECT_EQ(Quoted(""), "\"\"");
  EXPECT_EQ(Quoted("plain"), "\"plain\"");
  EXPECT_EQ(Quoted("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(Quoted("\n\r\t"), R"("\n\r\t")");
  EXPECT_EQ(Quoted(std::string("\x01\x1f\0", 3)), R"("\u0001\u001f\u0000")");
  EXPECT_EQ(Quoted("caf\xc3\xa9 /"), "\"caf\xc3\xa9 /\"");
}

TEST(AppendJsonStringTest, AppendsToExistingTextAndResultIsValidJson) {
  std::string out = "prefix:";
  AppendJsonString(&out, "x");
  EXPECT_EQ(out, "prefix:\"x\"");
  std::string all_bytes;
  for (int c = 1; c < 0x80; ++c) all_bytes.push_back(static_cast<char>(c));
  std::string quoted = Quoted(all_bytes);
  EXPECT_TRUE(ValidateJson(quoted).ok()) << quoted;
}

TEST(IsValidUtf8Test, AcceptsWellFormedSequencesOfEveryLength) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii"));
  EXPECT_TRUE(IsValidUtf8(std::string("\0", 1)));
  EXPECT_TRUE(IsValidUtf8("\xc2\x80"));          // U+0080, smallest 2-byte
  EXPECT_TRUE(IsValidUtf8("\xdf\xbf"));          // U+07FF
  EXPECT_TRUE(IsValidUtf8("\xe0\xa0\x80"));      // U+0800, smallest 3-byte
  EXPECT_TRUE(IsValidUtf8("\xed\x9f\xbf"));      // U+D7FF, just below the surrogates
  EXPECT_TRUE(IsValidUtf8("\xee\x80\x80"));      // U+E000, just above them
  EXPECT_TRUE(IsValidUtf8("\xef\xbf\xbf"));      // U+FFFF
  EXPECT_TRUE(IsValidUtf8("\xf0\x90\x80\x80"));  // U+10000, smallest 4-byte
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80"));  // emoji
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF, the last code point
  EXPECT_TRUE(IsValidUtf8("a\xc3\xa9z\xf0\x9f\x98\x80!"));
}

TEST(IsValidUtf8Test, RejectsOverlongForms) {
  EXPECT_FALSE(IsValidUtf8("\xc0\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc1\xbf"));
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xe0\x9f\xbf"));
  EXPECT_FALSE(IsValidUtf8("\xf0\x80\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xf0\x8f\xbf\xbf"));
}

TEST(IsValidUtf8Test, RejectsSurrogatesAndCodePointsAboveTheMaximum) {
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // U+D800
  EXPECT_FALSE(IsValidUtf8("\xed\xbf\xbf"));      // U+DFFF
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(IsValidUtf8("\xf7\xbf\xbf\xbf"));
  EXPECT_FALSE(IsValidUtf8("\xf8\x88\x80\x80\x80"));  // 5-byte form
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xfe"));
}

TEST(IsValidUtf8Test, RejectsTruncatedAndStrayContinuationBytes) {
  EXPECT_FALSE(IsValidUtf8("\xc3"));
  EXPECT_FALSE(IsValidUtf8("a\xc3"));
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));
  EXPECT_FALSE(IsValidUtf8("\xf0\x9f\x98"));
  EXPECT_FALSE(
      IsValidUtf8("\xf0\x9f\x98"
                  "a"));
  EXPECT_FALSE(
      IsValidUtf8("\xc3"
                  "a"));
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(
      IsValidUtf8("a\xbf"
                  "b"));
  EXPECT_FALSE(IsValidUtf8("\xc3\xa9\xa9"));
}

}  // namespace
}  // namespace push
