#include "common/auth/tls_credentials.h"

#include <memory>

#include "common/auth/openssl_ptr.h"
#include "openssl/bio.h"
#include "openssl/err.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace push {
namespace {

// OpenSSL's reason for the last failure; clears its error queue.
std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

// An encrypted key would make OpenSSL prompt on the terminal: refuse it instead.
int NoPassword(char*, int, int, void*) { return -1; }

OpenSslPtr<BIO, BIO_free> MemoryBio(std::string_view pem) {
  return OpenSslPtr<BIO, BIO_free>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

}  // namespace

TlsCredentialsCheck CheckTlsCredentials(std::string_view cert_pem, std::string_view key_pem) {
  ERR_clear_error();
  OpenSslPtr<X509, X509_free> cert(
      PEM_read_bio_X509(MemoryBio(cert_pem).get(), nullptr, NoPassword, nullptr));
  if (!cert) return {TlsCredentialsError::kCertificate, OpenSslError()};
  OpenSslPtr<EVP_PKEY, EVP_PKEY_free> key(
      PEM_read_bio_PrivateKey(MemoryBio(key_pem).get(), nullptr, NoPassword, nullptr));
  if (!key) return {TlsCredentialsError::kKey, OpenSslError()};
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return {TlsCredentialsError::kMismatch, OpenSslError()};
  }
  return {};
}

}  // namespace push
