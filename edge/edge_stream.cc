#include "edge/edge_stream.h"

#include <openssl/evp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace push::edge {

ssize_t EdgeStream::ReadSome(uint8_t* out, size_t size) {
  if (early_) {
    size_t n = std::min(size, early_->size());
    std::memcpy(out, early_->data(), n);
    early_->erase(0, n);
    if (early_->empty()) early_.reset();
    return static_cast<ssize_t>(n);
  }
  return ::recv(native_handle(), out, size, MSG_DONTWAIT);
}

std::string UpgradeResponse(std::string_view key) {
  // Sec-WebSocket-Accept: base64 of the SHA-1 of the key and the protocol's GUID.
  std::string keyed(key);
  keyed += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  EVP_Digest(keyed.data(), keyed.size(), digest, &digest_size, EVP_sha1(), nullptr);
  unsigned char accept[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  int accept_size = EVP_EncodeBlock(accept, digest, static_cast<int>(digest_size));
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  response.append(reinterpret_cast<const char*>(accept), static_cast<size_t>(accept_size));
  response += "\r\nServer: pushd\r\n\r\n";
  return response;
}

}  // namespace push::edge
