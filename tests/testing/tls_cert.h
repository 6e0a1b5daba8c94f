#pragma once

#include <string>

namespace push::testing {

// A key pair and self-signed certificate made at runtime, in PEM.
struct TestCertificate {
  std::string cert_pem;
  std::string key_pem;
};

// An ECDSA P-256 certificate for `common_name` with subjectAltName DNS:localhost, IP:127.0.0.1
// and IP:::1, valid from an hour ago for a day. Self-signed: it is its own CA, so a client
// trusts it by taking cert_pem as its root. Fails the current test on error.
TestCertificate MakeSelfSignedCertificate(const std::string& common_name = "localhost");

// `key_pem` encrypted with `passphrase` (AES-256), as `openssl pkey -aes256` writes it.
std::string EncryptedKeyPem(const std::string& key_pem, const std::string& passphrase);

}  // namespace push::testing
