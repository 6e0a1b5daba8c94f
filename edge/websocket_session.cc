#include "edge/websocket_session_impl.h"

namespace push::edge {

template class WebSocketSession<EdgeStream>;

}  // namespace push::edge
