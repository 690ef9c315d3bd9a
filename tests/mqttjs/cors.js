// A page from another origin than unigate's, in headless Chromium (page.js): it opens an
// EventSource on unigate's /topics/<prefix>/# and then publishes to <prefix>/from-page with
// fetch() and a JSON body (which makes Chromium send a CORS preflight first).
//
// Usage: node cors.js <http-port> <topic-prefix> <page-origin>
//
// The page is served at <page-origin>/index.html by request interception; its requests to
// http://127.0.0.1:<http-port> go to unigate for real, as cross-origin requests. One line each
// on stdout:
//   "sse open" / "sse refused"               the EventSource opened / was refused;
//   "published <status>" / "publish refused" fetch() got an answer / threw (CORS refused it);
//   "SSE <topic> <payload>"                  a message the EventSource received;
//   "done"                                   both outcomes are known (and, if the stream is
//                                            open, the page's own message came back on it).
const { runPage } = require("./page");

const [port, prefix, pageOrigin] = process.argv.slice(2);
if (!port || !prefix || !pageOrigin) {
  console.log("ERROR usage: node cors.js <http-port> <topic-prefix> <page-origin>");
  process.exit(2);
}
const api = `http://127.0.0.1:${port}`;

const page_html = `<!doctype html>
<html><head><meta charset="utf-8"><title>unigate CORS test</title></head>
<body><script>
const api = ${JSON.stringify(api)}, prefix = ${JSON.stringify(prefix)};
function say(line) { console.log(line); }
let streamDone = false, publishDone = false;
function maybeDone() { if (streamDone && publishDone) { es.close(); say("done"); } }
function publish() {
  fetch(api + "/api/v1/publish", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ topic: prefix + "/from-page", payload: "hello across origins", qos: 1 }),
  }).then((r) => { say("published " + r.status); publishDone = true; maybeDone(); },
          () => { say("publish refused"); publishDone = true; maybeDone(); });
}
const es = new EventSource(api + "/topics/" + encodeURIComponent(prefix + "/#"), { withCredentials: true });
es.addEventListener("open", () => { say("sse open"); publish(); });
es.addEventListener("message", (e) => {
  const m = JSON.parse(e.data);
  say("SSE " + m.topic + " " + m.payload);
  if (m.topic === prefix + "/from-page") { streamDone = true; maybeDone(); }
});
es.addEventListener("error", () => {
  if (es.readyState === EventSource.CLOSED && !streamDone) {
    say("sse refused"); streamDone = true; publish();
  }
});
</script></body></html>`;

runPage(`${pageOrigin}/index.html`, {
  [`${pageOrigin}/index.html`]: { contentType: "text/html; charset=utf-8", body: page_html },
});
