// Regression tests from the adversarial review of the browser client, on
// the same scripted WebSocket and fake timers as client.test.mjs.
import assert from "node:assert/strict";
import { mock, test } from "node:test";

import { AuthSocket, FakeWebSocket, T0, advance, b64url, backoffDelay, fakeDocument, fakeLocks, flush, jwt, nowS, parseControl, renewDelay, renewLead, setup, sleepFor, tokenExp, usableToken, windowEvents } from "./harness.mjs";


// The client clock starts 3 h behind the server's and is corrected (NTP)
// while the connection is open: the server's clock does not move.
test("a local clock corrected after the skew was learned causes no renewal loop or reconnect storm", async () => {
  let offset = 3 * 3_600_000; // server minus client
  const ttlS = 600;
  const { last, calls } = setup({
    iat: false,
    options: { renewBeforeMs: 60_000 },
    mint: (n) => jwt({ exp: Math.floor((Date.now() + offset) / 1000) + ttlS + n - 1, n }),
  });
  await flush();
  const serverNow = () => (Date.now() + offset) / 1000;
  const servers = new Map();
  const drive = async (seconds) => {
    for (let t = 0; t < seconds; t += 1) {
      for (const ws of FakeWebSocket.instances) {
        if (ws.readyState === 0) {
          ws.accept();
          const exp = tokenExp(ws.protocols[1].slice(7));
          servers.set(ws, { exp, noticed: false, answered: 0 });
        }
        const s = servers.get(ws);
        if (!s || ws.readyState !== 1) continue;
        if (!s.noticed && s.exp - serverNow() <= 60) {
          s.noticed = true;
          ws.control({ type: "auth.expiring", exp: s.exp, expires_in: Math.floor(s.exp - serverNow()) });
        }
        for (const r of ws.renewals().slice(s.answered)) {
          s.answered += 1;
          const next = tokenExp(r.token);
          if (next > s.exp) { s.exp = next; s.noticed = false; ws.control({ type: "auth.renewed", exp: next, id: r.id }); }
          else ws.control({ type: "auth.renew_rejected", error: "invalid_token", id: r.id });
        }
      }
      await advance(1_000, 250);
    }
  };
  await drive(600); // one notice-driven renewal: the skew (+3 h) is learned
  const before = { calls: calls(), sockets: FakeWebSocket.instances.length };
  assert.equal(before.sockets, 1);
  // NTP corrects the local clock: +3 h on Date.now(), no time passes on the server.
  mock.timers.setTime(Date.now() + 3 * 3_600_000);
  offset = 0;
  await drive(600);
  const renewals = FakeWebSocket.instances.reduce((n, ws) => n + ws.renewals().length, 0);
  console.log({ fetches: calls() - before.calls, sockets: FakeWebSocket.instances.length, renewals });
  // A clock stepped forward past the deadline looks like a machine that slept
  // past it (the timers fire "late" by the wall clock): the socket reconnects
  // once with a fresh token. Telling the two apart needs a monotonic clock
  // that counts sleep, which browsers do not offer everywhere; what must not
  // happen is a loop of renewals or reconnects.
  assert.ok(FakeWebSocket.instances.length <= 2, `${FakeWebSocket.instances.length} connections: a reconnect storm`);
  assert.ok(calls() - before.calls <= 3, `${calls() - before.calls} token fetches in 10 minutes of 10-minute tokens`);
});


for (const [name, code] of [["waking from sleep past expiry", null], ["a 4401 that reaches every tab at once", 4401]]) {
  test(`tabs share one token fetch when reconnecting after ${name}`, async () => {
    globalThis.navigator.locks = fakeLocks();
    let draw = 0;
    mock.method(Math, "random", () => ((draw += 1) * 0.377) % 1);
    let fetches = 0;
    const mint = () => { fetches += 1; return undefined; };
    [0, 1, 2].forEach(() => setup({ ttlS: 600, delayMs: 20, mint, options: { shareTokens: true, shareKey: `k-${code}` } }));
    await advance(200);
    assert.equal(fetches, 1, "one fetch for three tabs connecting");
    const wss = [...FakeWebSocket.instances];
    for (const ws of wss) ws.accept();
    await advance(1_000, 100);
    if (code === null) {
      sleepFor(700_000); // the machine slept past the shared token's exp
    } else {
      for (const ws of wss) ws.serverClose(code, "token expired");
    }
    await advance(3_000, 10);
    console.log({ name, fetchesAfter: fetches - 1, sockets: FakeWebSocket.instances.length });
    assert.equal(FakeWebSocket.instances.length, 6);
    assert.equal(fetches - 1, 1, `${fetches - 1} token fetches for three tabs reconnecting`);
  });
}


test("close() while another tab holds the token lock: no getToken after close", async () => {
  globalThis.navigator.locks = fakeLocks();
  const a = setup({ ttlS: 600, delayMs: 2_000, options: { shareTokens: true, shareKey: "k" } });
  await advance(100);
  const b = setup({ ttlS: 600, delayMs: 2_000, options: { shareTokens: true, shareKey: "k" } });
  await advance(100);
  b.socket.close();
  const callsAtClose = b.calls();
  await advance(5_000, 50);
  console.log({ a: a.calls(), bAtClose: callsAtClose, bAfter: b.calls() });
  assert.equal(b.calls(), callsAtClose, "getToken was called after close()");
});

test("an early auth.expiring whose deadline equals a replaced token's exp is still answered", async () => {
  const { last, calls, tokens } = setup({ ttlS: 60, options: { renewBeforeMs: 60_000 } });
  await flush();
  last().accept();
  const oldExp = tokenExp(tokens[0]);
  await advance(30_500, 500); // the client's own timer renews halfway
  const [renewal] = last().renewals();
  assert.ok(renewal, "own-timer renewal");
  last().control({ type: "auth.renewed", exp: tokenExp(renewal.token), id: renewal.id });
  // Right after, the user's roles change: the server asks for re-authentication
  // within 30 s (its deadline happens to fall in the old token's last second).
  last().control({ type: "auth.expiring", exp: oldExp, expires_in: oldExp - nowS() });
  await advance(10_000, 100);
  console.log({ calls: calls(), renewals: last().renewals().length, oldExp, now: nowS() });
  assert.equal(last().renewals().length, 2, "the re-authentication request was ignored");
});

test("a token endpoint down for 5 s after the notice does not cost the connection (60 s left)", async () => {
  let downUntil = 0;
  const { of, last, calls } = setup({
    ttlS: 600,
    mint: () => { if (Date.now() < downUntil) throw new Error("502 Bad Gateway"); return undefined; },
  });
  await flush();
  last().accept();
  downUntil = Date.now() + 5_000;
  last().control({ type: "auth.expiring", exp: nowS() + 60, expires_in: 60 });
  await advance(59_000, 100);
  console.log({ calls: calls(), errors: of("error").map((e) => e.message), renewals: last().renewals().length });
  assert.equal(last().renewals().length, 1, "renewal abandoned with most of the window left");
});

test("close() from an open/statechange listener: no event after close, no timer after close", async () => {
  for (const where of (process.env.WHERE ?? "statechange,open").split(",")) {
    FakeWebSocket.instances = [];
    const { socket, events, last } = setup({ ttlS: 3600 });
    socket.addEventListener(where, (e) => { if (where === "open" || e.detail.state === "open") socket.close(); });
    await flush();
    let armed = 0;
    const inner = globalThis.setTimeout;
    globalThis.setTimeout = (fn, ms, ...a) => { armed += 1; return inner(fn, ms, ...a); };
    last().accept();
    await advance(120_000, 1_000);
    globalThis.setTimeout = inner;
    const types = events.map((e) => e.type);
    console.log({ where, types, timersArmedAfterClose: armed });
    assert.equal(types.at(-1), "close", `events after the final close: ${types}`);
    assert.equal(armed, 0, `${armed} timers armed after close()`);
  }
});

test("a renewal that failed offline is retried once online, even with more than renewBeforeMs left", async () => {
  const { last, calls } = setup({
    ttlS: 3600,
    options: { renewBeforeMs: 60_000 },
    mint: () => { if (globalThis.navigator.onLine === false) throw new TypeError("Failed to fetch"); return undefined; },
  });
  await flush();
  last().accept();
  globalThis.navigator.onLine = false;
  // notify_before = 5 min on the server (or an early re-authentication request).
  last().control({ type: "auth.expiring", exp: nowS() + 300, expires_in: 300 });
  await advance(10_000, 100);
  globalThis.navigator.onLine = true;
  windowEvents.dispatchEvent(new Event("online"));
  await advance(289_000, 1_000);
  console.log({ calls: calls(), renewals: last().renewals().length });
  assert.equal(last().renewals().length, 1, "no renewal before the deadline: the connection ends with 4401");
});

test("tokenTimeoutMs of 0, NaN or Infinity is clamped to a sane range", async () => {
  // 0 would time every fetch out at once: a 50 ms getToken still works.
  const quick = setup({ delayMs: 50, options: { tokenTimeoutMs: 0 } });
  await advance(100);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(quick.of("error").length, 0);
  // Infinity (or NaN) would wait forever on a getToken that hangs.
  for (const tokenTimeoutMs of [Infinity, NaN]) {
    const { of } = setup({ mint: () => new Promise(() => {}), options: { tokenTimeoutMs } });
    await advance(130_000, 1_000);
    assert.match(of("error")[0]?.message ?? "", /did not settle within (120000|10000) ms/);
  }
});

test("a server rejection is retried a few times, spread over the remaining life", async () => {
  const { of, last } = setup({ ttlS: 3600 });
  await flush();
  last().accept();
  const start = Date.now();
  last().control({ type: "auth.expiring", exp: nowS() + 60, expires_in: 60 });
  const times = [];
  for (let t = 0; t < 70; t += 1) {
    await advance(1_000, 100);
    for (const r of last().renewals().slice(times.length)) {
      times.push(Date.now() - start);
      last().control({ type: "auth.renew_rejected", error: "invalid_token", id: r.id });
    }
  }
  assert.equal(times.length, 3, `three attempts per token (the server's rate limit): ${times}`);
  assert.equal(of("renewrejected").length, 3);
  assert.ok(times[2] >= 10_000, `all attempts within ${times[2]} ms of a 60 s window`);
  assert.ok(times[2] < 60_000);
});

// Second review (issue 11 closure).

test("a renewal the server never answers is given up with an error event; a notice that came meanwhile is answered", async () => {
  const { of, last } = setup({ ttlS: 3600 });
  await flush();
  last().accept();
  last().control({ type: "auth.expiring", exp: nowS() + 60, expires_in: 60 });
  await advance(1_000, 100);
  assert.equal(last().renewals().length, 1);
  // No answer. The server asks again (a re-authentication request, 40 s left).
  await advance(5_000, 100);
  last().control({ type: "auth.expiring", exp: nowS() + 40, expires_in: 40 });
  await advance(3_000, 100);
  assert.equal(of("error").length, 0, "10 s for the answer");
  assert.equal(last().renewals().length, 1, "the notice is served by the renewal under way");
  await advance(3_000, 100);
  const errors = of("error");
  assert.equal(errors.length, 1, JSON.stringify(errors));
  assert.equal(errors[0].stage, "renew");
  assert.match(errors[0].message, /did not answer the renewal within 10000 ms/);
  const renewals = last().renewals();
  assert.equal(renewals.length, 2, "the later notice was never answered");
  last().control({ type: "auth.renewed", exp: tokenExp(renewals[1].token), id: renewals[1].id });
  assert.equal(of("renewed").length, 1);
  await advance(20_000, 100);
  assert.equal(of("error").length, 1, "no timeout after the answer came");
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("close() with a code or reason a WebSocket refuses throws like one and changes nothing (no leaked socket)", async () => {
  const { socket, of, last } = setup({ ttlS: 3600 });
  await flush();
  last().accept();
  const ws = last();
  for (const [code, reason, name] of [[1001, "", "InvalidAccessError"], [1006, undefined, "InvalidAccessError"], [4000, "x".repeat(124), "SyntaxError"]]) {
    assert.throws(() => socket.close(code, reason), { name });
    assert.equal(socket.state, "open", `close(${code}) stopped the AuthSocket but left its WebSocket open`);
    assert.equal(ws.readyState, 1);
  }
  assert.equal(of("close").length, 0);
  socket.send("still works");
  assert.deepEqual(ws.sent, ["still works"]);
  socket.close(4000, "bye");
  assert.deepEqual(ws.closedWith, { code: 4000, reason: "bye" });
  assert.equal(socket.state, "stopped");
  // While reconnecting (no WebSocket at hand) the same arguments are refused the same way.
  const other = setup({ ttlS: 3600, options: { url: "ws://test/other" } });
  await flush();
  assert.throws(() => other.socket.close(1001), { name: "InvalidAccessError" });
  assert.equal(other.socket.state, "connecting");
  other.socket.close();
  assert.equal(other.socket.state, "stopped");
});
