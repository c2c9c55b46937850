// Opens the browser demo in headless Chromium and waits until the page has
// renewed its token several times over one connection while echoes flow.
// Usage: node e2e.mjs <page-url> <screenshot.png> <renewals>
// Prints one JSON line with the page's counters; exits non-zero on failure.
import { chromium } from "playwright-core";

const [url, screenshot, wanted = "3"] = process.argv.slice(2);
const renewalsWanted = Number(wanted);
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

const browser = await chromium.launch({
  executablePath,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let status = 1;
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(url);
  const read = () =>
    page.evaluate(() => ({
      state: document.getElementById("state").textContent,
      protocol: document.getElementById("protocol").textContent,
      connects: Number(document.getElementById("connects").textContent),
      renewals: Number(document.getElementById("renewals").textContent),
      sent: Number(document.getElementById("sent").textContent),
      echoes: Number(document.getElementById("echoes").textContent),
      log: document.getElementById("log").textContent,
    }));
  try {
    await page.waitForFunction(
      (n) => Number(document.getElementById("renewals").textContent) >= n,
      renewalsWanted,
      { timeout: 60_000, polling: 100 },
    );
  } finally {
    await page.screenshot({ path: screenshot });
  }
  // Echoes are still flowing after the last renewal.
  const before = await read();
  await page.waitForFunction((n) => Number(document.getElementById("echoes").textContent) > n, before.echoes + 3, {
    timeout: 10_000,
  });
  const result = { ...(await read()), errors };
  console.log(JSON.stringify(result));
  status = 0;
} catch (error) {
  console.error(String(error));
} finally {
  await browser.close();
}
process.exit(status);
