#include "tests/testing/jwt_signing.h"

#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "absl/strings/str_cat.h"
#include "common/auth/jwt.h"

namespace push::testing {

std::string PublicKeyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  return pem;
}

std::string Hs256Mac(std::string_view key, std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

std::string Rs256Signature(EVP_PKEY* key, std::string_view input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                 input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  EVP_MD_CTX_free(ctx);
  sig.resize(len);
  return sig;
}

std::string JwtSigningInput(std::string_view header, std::string_view payload) {
  return absl::StrCat(Base64UrlEncode(header), ".", Base64UrlEncode(payload));
}

std::string SignHs256(std::string_view payload, std::string_view key, std::string_view header) {
  std::string input = JwtSigningInput(header, payload);
  return absl::StrCat(input, ".", Base64UrlEncode(Hs256Mac(key, input)));
}

std::string SignRs256(EVP_PKEY* key, std::string_view payload, std::string_view header) {
  std::string input = JwtSigningInput(header, payload);
  return absl::StrCat(input, ".", Base64UrlEncode(Rs256Signature(key, input)));
}

std::string ClaimsJson(const std::string& sub, int64_t exp, const std::string& extra) {
  return absl::StrCat(R"({"sub":")", sub, R"(","exp":)", exp, extra, "}");
}

}  // namespace push::testing
