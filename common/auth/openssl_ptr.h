#pragma once

// unique_ptr for OpenSSL objects, freed with their own function: OpenSslPtr<EVP_PKEY,
// EVP_PKEY_free>.

#include <memory>

namespace push {

template <auto Free>
struct OpenSslFree {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};

template <class T, auto Free>
using OpenSslPtr = std::unique_ptr<T, OpenSslFree<Free>>;

}  // namespace push
