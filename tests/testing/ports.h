#pragma once

namespace push::testing {

// A loopback TCP port that was free a moment ago (bound to port 0, then released): nothing
// listens on it, though another process may take it before the caller does. 0 on failure.
int FreeLoopbackPort();

}  // namespace push::testing
