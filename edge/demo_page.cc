#include "edge/demo_page.h"

namespace push::edge {

std::string_view DemoPageHtml() {
  static constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pushd demo</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2em; max-width: 60em; }
  #log { border: 1px solid #ccc; padding: .5em; height: 24em; overflow: auto;
         font-family: ui-monospace, monospace; white-space: pre-wrap; }
  #state { font-weight: bold; }
</style>
</head>
<body>
<h1>pushd demo</h1>
<p>
  <label>user id <input id="user" value="alice"></label>
  <button id="connect">Connect</button>
  state: <span id="state">disconnected</span>
</p>
<div id="log"></div>
<script>
  const log = (line) => {
    const el = document.getElementById('log');
    el.textContent += line + '\n';
    el.scrollTop = el.scrollHeight;
  };
  let ws = null;
  let lastSeq = 0;
  document.getElementById('connect').onclick = () => {
    if (ws) ws.close();
    const user = document.getElementById('user').value;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${proto}//${location.host}/ws?user_id=${encodeURIComponent(user)}` +
                (lastSeq ? `&since=${lastSeq}` : '');
    ws = new WebSocket(url);
    document.getElementById('state').textContent = 'connecting';
    ws.onopen = () => document.getElementById('state').textContent = 'connected';
    ws.onclose = (e) => {
      document.getElementById('state').textContent = `closed (${e.code} ${e.reason})`;
    };
    ws.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      if (frame.type === 'message') {
        lastSeq = frame.seq;
        log(`#${frame.seq} ${JSON.stringify(frame.data)} (${Date.now() - frame.ts} ms)`);
      } else {
        log(e.data);
      }
    };
  };
</script>
</body>
</html>
)html";
  return kPage;
}

}  // namespace push::edge
