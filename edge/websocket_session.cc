#include "edge/websocket_session_impl.h"

namespace push::edge {

void teardown(beast::role_type, EdgeStream& stream, beast::error_code& ec) {
  stream.shutdown(net::socket_base::shutdown_send, ec);
}

template class WebSocketSession<EdgeStream>;

}  // namespace push::edge
