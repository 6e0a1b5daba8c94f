#include "edge/wire_frames.h"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "absl/strings/str_cat.h"
#include "common/json/json.h"

namespace push::edge {

std::string EncodeWelcome(std::string_view connection_id, std::string_view user_id, uint64_t seq,
                          std::string_view device_id) {
  std::string f = R"({"type":"welcome","connection_id":)";
  AppendJsonString(&f, connection_id);
  f.append(R"(,"user_id":)");
  AppendJsonString(&f, user_id);
  if (!device_id.empty()) {
    f.append(R"(,"device_id":)");
    AppendJsonString(&f, device_id);
  }
  absl::StrAppend(&f, R"(,"seq":)", seq, "}");
  return f;
}

std::string EncodeGap(uint64_t from, uint64_t to) {
  return absl::StrCat(R"({"type":"gap","from":)", from, R"(,"to":)", to, "}");
}

bool ParseClientFrame(std::string_view text, ClientFrame* out, std::string* error) {
  unsigned char buffer[8192];
  boost::json::monotonic_resource mr(buffer, sizeof(buffer));
  boost::system::error_code ec;
  boost::json::value v =
      boost::json::parse(boost::json::string_view(text.data(), text.size()), ec, &mr);
  if (ec) {
    *error = "frame is not JSON";
    return false;
  }
  const boost::json::object* obj = v.if_object();
  if (obj == nullptr) {
    *error = "frame is not a JSON object";
    return false;
  }
  const boost::json::value* type = obj->if_contains("type");
  if (type == nullptr || !type->is_string()) {
    *error = "frame has no string \"type\"";
    return false;
  }
  if (type->get_string() == "refresh") {
    const boost::json::value* token = obj->if_contains("token");
    if (token == nullptr || !token->is_string()) {
      *error = "refresh needs a string \"token\"";
      return false;
    }
    out->type = ClientFrame::Type::kRefresh;
    out->token.assign(token->get_string().data(), token->get_string().size());
    return true;
  }
  if (type->get_string() != "ack") {
    *error = "unknown frame type";
    return false;
  }
  const boost::json::value* seq = obj->if_contains("seq");
  if (seq == nullptr) {
    *error = "ack needs \"seq\"";
    return false;
  }
  if (seq->is_uint64()) {
    out->seq = seq->get_uint64();
  } else if (seq->is_int64() && seq->get_int64() >= 0) {
    out->seq = static_cast<uint64_t>(seq->get_int64());
  } else {
    *error = "ack \"seq\" must be a non-negative integer";
    return false;
  }
  out->type = ClientFrame::Type::kAck;
  return true;
}

}  // namespace push::edge
