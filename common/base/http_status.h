#pragma once

// absl::Status -> HTTP status code, the one mapping every HTTP answer of pushd uses (the gRPC
// side maps one to one: services/async_call.h ToGrpcStatus). The usual table of Google's API
// design guide: INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE 400, UNAUTHENTICATED 401,
// PERMISSION_DENIED 403, NOT_FOUND 404, ALREADY_EXISTS and ABORTED 409, RESOURCE_EXHAUSTED 429,
// CANCELLED 499, UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, the rest 500.

#include "absl/status/status.h"

namespace push {

int HttpStatusOf(const absl::Status& status);

}  // namespace push
