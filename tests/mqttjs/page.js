// Runs one test page in headless Chromium (Debian's, driven by playwright-core, no browser
// download) and relays what it says: the page's console lines go to stdout, one each; "done"
// ends the run with exit code 0, a line starting with "ERROR" (or an uncaught page error) with 1.
// Chromium's own console errors (such as its report of a request CORS blocked) are not relayed.
//
// `routes` maps URLs to { contentType, body }, fulfilled by request interception (unigate has no
// static files); everything else the page asks for goes to the network for real.
const { chromium } = require("playwright-core");

async function runPage(url, routes) {
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
    for (const [routeUrl, { contentType, body }] of Object.entries(routes)) {
      await page.route(routeUrl, (route) => route.fulfill({ status: 200, contentType, body }));
    }
    page.on("console", (msg) => {
      const text = msg.text();
      if (msg.type() === "error" && !text.startsWith("ERROR")) return;
      console.log(text);
      if (text === "done") finish(0);
      if (text.startsWith("ERROR")) finish(1);
    });
    page.on("pageerror", (e) => { console.log("ERROR page " + e.message); finish(1); });
    await page.goto(url);
  } catch (e) {
    console.log("ERROR " + e.message);
    await finish(1);
  }
}

module.exports = { runPage };
