#pragma once

// The TLS listeners' credentials, checked once at start, before anything listens: a wrong file
// stops pushd with a clear message instead of failing every handshake.

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace push {

enum class TlsCredentialsError { kNone, kCertificate, kKey, kMismatch };

struct TlsCredentialsCheck {
  TlsCredentialsError error = TlsCredentialsError::kNone;
  std::string detail;  // OpenSSL's reason, when it gave one
};

// Whether `cert_pem` holds a PEM certificate, `key_pem` an unencrypted PEM private key (an
// encrypted one is refused rather than prompted for), and the key is the certificate's.
TlsCredentialsCheck CheckTlsCredentials(std::string_view cert_pem, std::string_view key_pem);

}  // namespace push
