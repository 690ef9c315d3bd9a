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
const { chromium } = require("playwright-core");

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

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // As root Chromium needs --no-sandbox; the next ones keep it from calling home (the network
    // is closed here, and each refused connection costs time). A page fulfilled by request
    // interception has no IP address, so Chromium's Local Network Access checks take it for a
    // public one and block its requests to 127.0.0.1; served from unigate's address for real,
    // it would be a loopback page and pass: the checks are off for that reason only.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-features=LocalNetworkAccessChecks,LocalNetworkAccessChecksWebSockets"],
  });
  let finished = false;
  const finish = async (code) => {
    if (finished) return;
    finished = true;
    await browser.close().catch(() => {});
    process.exit(code);
  };
  try {
    const page = await browser.newPage();
    await page.route(`${origin}/browser-test/index.html`, (route) =>
      route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: page_html }));
    await page.route(`${origin}/browser-test/mqtt.min.js`, (route) =>
      route.fulfill({ status: 200, contentType: "text/javascript", body: bundle }));
    page.on("console", (msg) => {
      const text = msg.text();
      console.log(text);
      if (text === "done") finish(0);
      if (text.startsWith("ERROR")) finish(1);
    });
    page.on("pageerror", (e) => { console.log("ERROR page " + e.message); finish(1); });
    await page.goto(`${origin}/browser-test/index.html`);
  } catch (e) {
    console.log("ERROR " + e.message);
    await finish(1);
  }
})();
