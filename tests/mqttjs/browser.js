// A real browser against unigate: headless Chromium (Debian's, driven by playwright-core, no
// browser download) loads a page that runs MQTT.js's browser bundle over WebSocket (/mqtt,
// subprotocol mqtt) and an EventSource on /topics/{filter} (Server-Sent Events).
//
// Usage: node browser.js <http-port> <topic-prefix>
//
// The page is served at http://127.0.0.1:<http-port>/browser-test/index.html, unigate's own
// origin, by request interception: unigate has no static files (cors.js is the page from another
// origin). Everything else the page asks for (the WebSocket, the event stream) goes to unigate
// for real.
//
// Protocol with the test, one line each on stdout:
//   "ready"                  MQTT.js is connected and subscribed to <prefix>/#, and the event
//                            stream on <prefix>/# is open;
//   "MQTT <topic> <payload>" a message MQTT.js received;
//   "SSE <topic> <payload>"  a message the EventSource received;
//   "done"                   the page got <prefix>/from-http over MQTT.js and <prefix>/from-mqtt
//                            over SSE; the browser is closed and the process exits 0.
// Once ready, the page publishes "hello from the browser" to <prefix>/from-page (QoS 1).
const fs = require("fs");
const path = require("path");
const { runPage } = require("./page");

const [port, prefix] = process.argv.slice(2);
if (!port || !prefix) {
  console.log("ERROR usage: node browser.js <http-port> <topic-prefix>");
  process.exit(2);
}
const origin = `http://127.0.0.1:${port}`;
const bundle = fs.readFileSync(path.join(__dirname, "node_modules/mqtt/dist/mqtt.min.js"));

const page_html = `<!doctype html>
<html><head><meta charset="utf-8"><title>unigate browser test</title>
<script src="/browser-test/mqtt.min.js"></script></head>
<body><script>
const prefix = ${JSON.stringify(prefix)};
const seen = { mqtt: false, sse: false };
let mqttReady = false, sseReady = false;
function say(line) { console.log(line); }
function maybeReady() { if (mqttReady && sseReady) { say("ready"); client.publish(prefix + "/from-page", "hello from the browser", { qos: 1 }); } }
function maybeDone() { if (seen.mqtt && seen.sse) { client.end(false, () => say("done")); es.close(); } }

const client = mqtt.connect("ws://" + location.host + "/mqtt",
  { protocolVersion: 5, clientId: "browser-" + Math.random().toString(16).slice(2), reconnectPeriod: 0 });
client.on("connect", () => client.subscribe(prefix + "/#", { qos: 1 }, (err) => {
  if (err) { say("ERROR subscribe " + err.message); return; }
  mqttReady = true; maybeReady();
}));
client.on("message", (topic, payload) => {
  say("MQTT " + topic + " " + new TextDecoder().decode(payload));
  if (topic === prefix + "/from-http") { seen.mqtt = true; maybeDone(); }
});
client.on("error", (e) => say("ERROR mqtt " + e.message));

const es = new EventSource("/topics/" + encodeURIComponent(prefix + "/#"));
es.addEventListener("open", () => { sseReady = true; maybeReady(); });
es.addEventListener("message", (e) => {
  const m = JSON.parse(e.data);
  say("SSE " + m.topic + " " + m.payload);
  if (m.topic === prefix + "/from-mqtt") { seen.sse = true; maybeDone(); }
});
es.addEventListener("error", () => { if (es.readyState === EventSource.CLOSED) say("ERROR sse closed"); });
</script></body></html>`;

runPage(`${origin}/browser-test/index.html`, {
  [`${origin}/browser-test/index.html`]: { contentType: "text/html; charset=utf-8", body: page_html },
  [`${origin}/browser-test/mqtt.min.js`]: { contentType: "text/javascript", body: bundle },
});
