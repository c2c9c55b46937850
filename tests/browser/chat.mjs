// Drives the chat example's page in headless Chromium (Debian's, through
// playwright-core). Usage: node chat.mjs <page-url> <admin-token> <renewals>
//
// alice (writer) and dave (no roles) join room "a", erin (writer) room "b",
// each in its own browser context. alice's message reaches dave, not erin;
// dave is refused as read-only; alice renews several times on one
// connection and keeps chatting; the admin route kicks dave (4403, and his
// page stops). Prints one JSON line; exits non-zero on failure.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const [url, admin, wanted = "3"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const errors = [];

async function join(user, room, writer) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(url);
  await page.fill("#user", user);
  await page.fill("#room", room);
  await page.setChecked("#writer", writer);
  await page.click("#join button");
  await page.waitForFunction(() => document.getElementById("state").textContent === "open", null, { timeout: 10_000 });
  return page;
}
const chat = (page) => page.evaluate(() => ({ ...window.chat, send: undefined, state: document.getElementById("state").textContent }));
const until = (page, predicate, arg, timeout = 15_000) => page.waitForFunction(predicate, arg, { timeout, polling: 50 });
const heard = (text) => ([t]) => window.chat.messages.some((m) => m.text === t);

let status = 1;
const result = {};
try {
  const alice = await join("alice", "a", true);
  const dave = await join("dave", "a", false);
  const erin = await join("erin", "b", true);

  await alice.evaluate(() => window.chat.send("hello room a"));
  await until(dave, heard("hello room a"), ["hello room a"]);
  await erin.evaluate(() => window.chat.send("hello room b"));
  await until(erin, heard("hello room b"), ["hello room b"]);
  await dave.evaluate(() => window.chat.send("may I?"));
  await until(dave, () => window.chat.errors.includes("read-only"));

  // alice renews across several expiries and keeps chatting.
  await until(alice, ([n]) => window.chat.renewals >= n, [Number(wanted)], 60_000);
  await alice.evaluate(() => window.chat.send("still here"));
  await until(dave, heard("still here"), ["still here"]);

  const kicked = await fetch(new URL("/admin/kick/dave", url), { method: "POST", headers: { authorization: `Bearer ${admin}` } });
  result.kick = await kicked.json();
  await until(dave, () => window.chat.closed === 4403);

  result.alice = await chat(alice);
  result.dave = await chat(dave);
  result.erin = await chat(erin);
  assert.equal(result.dave.state, "stopped");
  assert.ok(!result.erin.messages.some((m) => m.text.startsWith("hello room a")), "room b heard room a");
  assert.ok(!result.alice.messages.some((m) => m.text === "hello room b"), "room a heard room b");
  assert.ok(!result.alice.messages.some((m) => m.text === "may I?"), "a read-only message was broadcast");
  result.errors = errors;
  status = 0;
} catch (error) {
  console.error(String(error?.stack ?? error));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(status);
