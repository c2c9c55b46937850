// The browser module's state machine with a scripted WebSocket and fake
// timers (node's mock timers, Date included), under node's built-in test
// runner: `node --test tests/browser/client.test.mjs`.
import assert from "node:assert/strict";
import { mock, test } from "node:test";

import { AuthSocket, DelayedChannel, FakeWebSocket, T0, advance, b64url, backoffDelay, fakeDocument, fakeLocks, flush, jwt, nowS, parseControl, renewDelay, renewLead, setup, sleepFor, tokenExp, usableToken, windowEvents } from "./harness.mjs";
test("control messages are recognised exactly as the contract says", () => {
  assert.equal(parseControl('{"type":"auth.expiring","exp":1,"expires_in":0}').type, "auth.expiring");
  assert.equal(parseControl(' {"type":"\\u0061uth.renewed","exp":2}').type, "auth.renewed");
  for (const text of ['{"type":"chat","body":"auth.x"}', '{"type":"Auth.x"}', '[{"type":"auth.x"}]', "auth.renewed", "{ broken"]) {
    assert.equal(parseControl(text), null, text);
  }
  assert.equal(tokenExp(jwt({ exp: 1764000000 })), 1764000000);
  assert.equal(tokenExp("garbage"), null);
});

test("tokens are trimmed; what cannot be a subprotocol entry is unusable", () => {
  assert.equal(usableToken("a.b.c\n"), "a.b.c");
  assert.equal(usableToken("  a.b.c \r\n"), "a.b.c");
  for (const bad of ["", " \n", "<!doctype html><p>502 Bad Gateway</p>", "a b", "a,b", "é", null, undefined, 42, {}]) {
    assert.equal(usableToken(bad), null, String(bad));
  }
});

test("offers wsauth.v1 plus the bearer entry and hides control messages", async () => {
  const { events, tokens, last } = setup();
  await flush();
  assert.deepEqual(last().protocols, ["wsauth.v1", `bearer.${tokens[0]}`]);
  last().accept();
  last().receive("hello");
  last().control({ type: "auth.renewed", exp: nowS() + 7200, id: "r1" });
  last().receive(new Uint8Array([1, 2]).buffer);
  assert.deepEqual(
    events.filter((e) => e.type !== "statechange").map((e) => e.type),
    ["open", "message", "renewed", "message"],
  );
  assert.equal(events.find((e) => e.type === "message").detail, "hello");
});

test("renews once on the server's notices, with one token fetch in flight", async () => {
  const { last, calls, tokens } = setup({ delayMs: 20 });
  await advance(30);
  last().accept();
  last().control({ type: "auth.expiring", exp: nowS() + 30, expires_in: 30 });
  last().control({ type: "auth.expiring", exp: nowS() + 30, expires_in: 30 });
  await advance(40);
  assert.equal(calls(), 2, "the two notices share one fetch");
  const renewals = last().renewals();
  assert.equal(renewals.length, 1, "one renewal answers both notices");
  assert.equal(renewals[0].token, tokens[1]);
  // Once answered, the next notice renews again.
  last().control({ type: "auth.renewed", exp: nowS() + 3600, id: renewals[0].id });
  last().control({ type: "auth.expiring", exp: nowS() + 20, expires_in: 20 });
  await advance(40);
  assert.equal(last().renewals().length, 2);
});

test("a notice that crosses the renewal on the wire is answered by that renewal", async () => {
  const { last, calls, tokens } = setup({ ttlS: 600 });
  await flush();
  last().accept();
  const oldExp = tokenExp(tokens[0]);
  last().control({ type: "auth.expiring", exp: oldExp, expires_in: 60 });
  await advance(20);
  const [renewal] = last().renewals();
  // Frames come in order: a second notice for the old token (an early
  // re-authentication request sent before our renewal reached the server)
  // comes before the answer, and the renewal under way answers it.
  last().control({ type: "auth.expiring", exp: oldExp, expires_in: 59 });
  await advance(100);
  last().control({ type: "auth.renewed", exp: tokenExp(renewal.token), id: renewal.id });
  await advance(100);
  assert.equal(calls(), 2);
  assert.equal(last().renewals().length, 1);
});

test("a token that would not extend the connection is not sent; the renewal is retried", async () => {
  const exp = nowS() + 600;
  const { of, last, calls } = setup({ mint: (n) => jwt({ exp: n <= 2 ? exp : exp + 60, n }) });
  await flush();
  last().accept();
  last().control({ type: "auth.expiring", exp, expires_in: 60 });
  await advance(20);
  assert.equal(last().renewals().length, 0);
  assert.match(of("error")[0].message, /expires no later than the current one; retrying/);
  await advance(2_000);
  assert.equal(calls(), 3);
  assert.equal(last().renewals().length, 1);
});

test("an early auth.expiring (re-authentication) is answered with a renewal too", async () => {
  const { last, calls } = setup({ ttlS: 3600 });
  await flush();
  last().accept();
  last().control({ type: "auth.expiring", exp: nowS() + 60, expires_in: 60 });
  await advance(20);
  assert.equal(calls(), 2);
  assert.equal(last().renewals().length, 1);
});

for (const code of [4401, 1001, 4429, 1006]) {
  test(`reconnects with backoff and a fresh token after ${code}`, async () => {
    const { socket, of, tokens, last } = setup();
    await flush();
    const first = last();
    first.accept();
    first.serverClose(code, "bye");
    assert.equal(socket.state, "reconnecting");
    socket.send("queued while away");
    const [reconnecting] = of("reconnecting");
    assert.equal(reconnecting.code, code);
    assert.ok(reconnecting.delayMs >= 0 && reconnecting.delayMs <= 100);
    await advance(120);
    const second = last();
    assert.notEqual(second, first);
    assert.deepEqual(second.protocols, ["wsauth.v1", `bearer.${tokens[1]}`]);
    second.accept();
    assert.equal(socket.state, "open");
    assert.deepEqual(second.sent, ["queued while away"]);
  });
}

for (const code of [4403, 4400]) {
  test(`stops for good on ${code}`, async () => {
    const { socket, events, last } = setup();
    await flush();
    last().accept();
    last().serverClose(code, "forbidden");
    await advance(3000, 100);
    assert.equal(socket.state, "stopped");
    assert.equal(FakeWebSocket.instances.length, 1, "no reconnect");
    assert.deepEqual(events.at(-1), { type: "close", detail: { code, reason: "forbidden", gaveUp: false } });
    assert.throws(() => socket.send("x"));
  });
}

test("a failing token endpoint is an error event and a retry with backoff", async () => {
  const { of, calls } = setup({
    mint: (n) => {
      if (n < 3) throw new Error("token endpoint answered 503");
      return undefined;
    },
  });
  await flush();
  assert.equal(of("error").length, 1);
  assert.deepEqual(of("error")[0], { stage: "token", message: "getToken failed: Error: token endpoint answered 503" });
  assert.equal(of("reconnecting")[0].code, null);
  await advance(1000);
  assert.equal(calls(), 3);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("a token with a trailing newline is trimmed", async () => {
  const { last, tokens } = setup({ mint: () => `${jwt({ exp: nowS() + 3600 })}\n` });
  await flush();
  assert.deepEqual(last().protocols, ["wsauth.v1", `bearer.${tokens[0].trim()}`]);
});

test("an unusable token is an error event and a retry, never a silent death", async () => {
  const html = "<!doctype html><title>502 Bad Gateway</title>";
  const { socket, of, calls, last } = setup({ mint: (n) => (n === 1 ? html : undefined) });
  await flush();
  assert.equal(FakeWebSocket.instances.length, 0, "no WebSocket with that token");
  const [error] = of("error");
  assert.equal(error.stage, "token");
  assert.match(error.message, /unusable token/);
  assert.ok(!error.message.includes("Bad Gateway"), "the body is not quoted");
  assert.equal(socket.state, "reconnecting");
  await advance(200);
  assert.equal(calls(), 2);
  last().accept();
  assert.equal(socket.state, "open");
});

test("a WebSocket constructor that throws is an error event and a retry", async () => {
  FakeWebSocket.throwNext = true;
  const { socket, of, last } = setup();
  await flush();
  const [error] = of("error");
  assert.equal(error.stage, "connect");
  assert.ok(!error.message.includes("bearer."), error.message);
  assert.equal(socket.state, "reconnecting");
  await advance(200);
  last().accept();
  assert.equal(socket.state, "open");
});

test("a getToken that never settles times out and does not block later fetches", async () => {
  const { socket, of, last, calls } = setup({
    mint: (n) => (n === 1 || n === 3 ? new Promise(() => {}) : undefined),
    options: { tokenTimeoutMs: 10_000 },
  });
  await advance(9_990, 100);
  assert.equal(of("error").length, 0);
  await advance(20);
  assert.equal(of("error")[0].stage, "token");
  assert.match(of("error")[0].message, /did not settle within 10000 ms/);
  await advance(200);
  assert.equal(calls(), 2);
  last().accept();
  assert.equal(socket.state, "open");
  // A renewal whose fetch hangs times out as well and is retried.
  last().control({ type: "auth.expiring", exp: nowS() + 60, expires_in: 60 });
  await advance(10_100, 100);
  assert.equal(of("error")[1].stage, "renew");
  await advance(500);
  assert.equal(calls(), 4);
  assert.equal(last().renewals().length, 1);
});

test("backoff resets only after a stable connection or application data", async () => {
  mock.method(Math, "random", () => 0.999999);
  const { of, last } = setup({ options: { stableAfterMs: 5_000, backoff: { baseMs: 100, maxMs: 100_000 } } });
  await flush();
  // A draining node: accepts, then closes at once, again and again.
  for (let i = 0; i < 4; i += 1) {
    last().accept();
    last().serverClose(1001, "draining");
    await advance(of("reconnecting").at(-1).delayMs + 10, 50);
  }
  const delays = of("reconnecting").map((d) => Math.round(d.delayMs));
  assert.deepEqual(delays, [100, 200, 400, 800]);
  // Open long enough: the next loss starts over.
  last().accept();
  await advance(5_000, 100);
  last().serverClose(1006);
  assert.equal(Math.round(of("reconnecting").at(-1).delayMs), 100);
  await advance(200);
  // Application data proves the connection works, too.
  last().accept();
  last().serverClose(1006);
  assert.equal(Math.round(of("reconnecting").at(-1).delayMs), 200);
  await advance(300);
  last().accept();
  last().receive("hello");
  last().serverClose(1006);
  assert.equal(Math.round(of("reconnecting").at(-1).delayMs), 100);
});

test("a token living 30 days neither overflows setTimeout nor renews at once", async () => {
  const days30 = 30 * 86_400;
  const { last, calls } = setup({ ttlS: days30, options: { renewBeforeMs: 60_000 } });
  await flush();
  last().accept();
  await advance(120_000, 1_000);
  assert.equal(last().renewals().length, 0, "no renewal at once");
  // Jump to just before the renewal moment (a late slice is only re-armed).
  sleepFor(days30 * 1000 - 120_000 - 130_000);
  await advance(30_000, 1_000);
  assert.equal(last().renewals().length, 0);
  await advance(65_000, 1_000);
  assert.equal(last().renewals().length, 1);
  assert.equal(calls(), 2);
});

for (const [name, serverOffsetMs, iat] of [
  ["3 hours ahead, tokens without iat", -3 * 3_600_000, false],
  ["3 hours behind, tokens without iat", 3 * 3_600_000, false],
  ["3 hours ahead, tokens with iat", -3 * 3_600_000, true],
  ["3 hours behind, tokens with iat", 3 * 3_600_000, true],
]) {
  test(`a client clock ${name} causes no renewal loop`, async () => {
    const ttlS = 120;
    const { last, calls, tokens } = setup({ ttlS, iat, serverOffsetMs, options: { renewBeforeMs: 30_000 } });
    await flush();
    const ws = last();
    ws.accept();
    // The scripted server: notice 30 s ahead of exp, answers renewals.
    let exp = tokenExp(tokens[0]);
    const serverNow = () => (Date.now() + serverOffsetMs) / 1000;
    let noticed = false;
    for (let t = 0; t < 600; t += 1) {
      if (!noticed && exp - serverNow() <= 30) {
        noticed = true;
        ws.control({ type: "auth.expiring", exp, expires_in: Math.floor(exp - serverNow()) });
      }
      for (const renewal of ws.renewals().slice(ws.answered ?? 0)) {
        ws.answered = (ws.answered ?? 0) + 1;
        const next = tokenExp(renewal.token);
        if (next > exp) {
          exp = next;
          noticed = false;
          ws.control({ type: "auth.renewed", exp, id: renewal.id });
        } else {
          ws.control({ type: "auth.renew_rejected", error: "invalid_token", id: renewal.id });
        }
      }
      assert.ok(exp > serverNow(), `the token expired at t=${t}s`);
      await advance(1_000, 250);
    }
    // Ten minutes of 2-minute tokens: about five renewals, not hundreds.
    const renewals = ws.renewals().length;
    assert.ok(renewals >= 4 && renewals <= 8, `${renewals} renewals`);
    assert.equal(calls(), renewals + 1);
    assert.equal(FakeWebSocket.instances.length, 1);
  });
}

test("jittered renewal: the moment is spread over renewJitterMs before the lead", async () => {
  assert.equal(renewLead(3_600_000, 60_000), 60_000);
  assert.equal(renewLead(4_000, 60_000), 2_000);
  const options = { renewBeforeMs: 60_000, renewJitterMs: 30_000 };
  assert.equal(renewDelay(3_600_000, 3_600_000, options, () => 0), 3_540_000);
  assert.equal(renewDelay(3_600_000, 3_600_000, options, () => 1), 3_510_000);
  // Two clients holding tokens minted together renew at different moments.
  const moments = [];
  for (const r of [0.1, 0.9]) {
    mock.method(Math, "random", () => r);
    const { last } = setup({ ttlS: 3600, options: { ...options, url: `ws://test/${r}` } });
    await flush();
    last().accept();
    mock.restoreAll();
    moments.push(last());
  }
  await advance(3_510_000 - 1_000, 1_000);
  assert.deepEqual(moments.map((ws) => ws.renewals().length), [0, 0]);
  await advance(15_000, 1_000);
  assert.deepEqual(moments.map((ws) => ws.renewals().length), [0, 1], "r=0.9 renews early in the window");
  await advance(16_000, 1_000);
  assert.deepEqual(moments.map((ws) => ws.renewals().length), [1, 1]);
});

test("close() during a failing token fetch does not reconnect", async () => {
  const { socket, of, calls } = setup({
    delayMs: 50,
    mint: () => {
      throw new Error("503");
    },
  });
  await advance(10);
  socket.close();
  await advance(5_000, 100);
  assert.equal(calls(), 1);
  assert.equal(of("reconnecting").length, 0);
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(socket.state, "stopped");
});

test("close() during a token fetch opens no socket", async () => {
  const { socket } = setup({ delayMs: 50 });
  await advance(10);
  socket.close();
  await advance(200);
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(socket.state, "stopped");
});

test("a handshake refused again and again stops with a final close; restart() starts over", async () => {
  const { socket, of, last, calls } = setup({ options: { maxFailedAttempts: 4 } });
  for (let i = 0; i < 4; i += 1) {
    await advance(1_100, 50);
    last().serverClose(1006, "");
  }
  assert.equal(socket.state, "stopped");
  assert.equal(of("reconnecting").length, 3);
  const [close] = of("close");
  assert.equal(close.gaveUp, true);
  assert.equal(close.code, 1006);
  assert.match(close.reason, /gave up after 4 attempts/);
  await advance(60_000, 1_000);
  assert.equal(calls(), 4, "nothing more after giving up");
  socket.restart();
  assert.equal(socket.state, "connecting");
  await flush();
  assert.equal(calls(), 5);
  last().accept();
  assert.equal(socket.state, "open");
});

test("failures while the browser is offline do not count; online reconnects at once", async () => {
  const { socket, of, last } = setup({ options: { maxFailedAttempts: 2 } });
  await flush();
  last().accept();
  globalThis.navigator.onLine = false;
  last().serverClose(1006);
  for (let i = 0; i < 3; i += 1) {
    await advance(1_000, 50);
    last().serverClose(1006);
  }
  assert.equal(socket.state, "reconnecting", "offline failures do not give up");
  const count = FakeWebSocket.instances.length;
  globalThis.navigator.onLine = true;
  windowEvents.dispatchEvent(new Event("online"));
  await flush();
  assert.equal(FakeWebSocket.instances.length, count + 1, "online connects without waiting");
  last().accept();
  assert.equal(socket.state, "open");
  assert.equal(of("close").length, 0);
});

test("a renewal that fails offline waits for online, then renews at once", async () => {
  const { of, last, calls } = setup({
    ttlS: 600,
    options: { renewBeforeMs: 60_000 },
    // getToken fails as fetch() does offline.
    mint: () => {
      if (globalThis.navigator.onLine === false) throw new TypeError("Failed to fetch");
      return undefined;
    },
  });
  await flush();
  last().accept();
  globalThis.navigator.onLine = false;
  last().control({ type: "auth.expiring", exp: nowS() + 60, expires_in: 60 });
  await advance(10_000, 100);
  assert.equal(calls(), 2, "no retries while offline");
  assert.equal(of("error").length, 1);
  assert.match(of("error")[0].message, /offline, waiting to be online/);
  globalThis.navigator.onLine = true;
  windowEvents.dispatchEvent(new Event("online"));
  await flush();
  assert.equal(last().renewals().length, 1, "renewed when back online");
});

test("visible after sleeping past expiry: reconnect at once with a fresh token", async () => {
  const { socket, of, last, tokens } = setup({ ttlS: 600 });
  await flush();
  const first = last();
  first.accept();
  fakeDocument.visibilityState = "hidden";
  fakeDocument.dispatchEvent(new Event("visibilitychange"));
  sleepFor(700_000);
  fakeDocument.visibilityState = "visible";
  fakeDocument.dispatchEvent(new Event("visibilitychange"));
  await flush();
  assert.deepEqual(first.closedWith, { code: 1000, reason: "token expired" });
  assert.equal(first.renewals().length, 0, "no renewal over the stale socket");
  assert.match(of("reconnecting")[0].reason, /token expired \(visible\)/);
  assert.equal(last().protocols[1], `bearer.${tokens[1]}`);
  last().accept();
  assert.equal(socket.state, "open");
});

test("visible inside the renewal window renews at once", async () => {
  const { last } = setup({ ttlS: 600, options: { renewBeforeMs: 60_000 } });
  await flush();
  last().accept();
  sleepFor(560_000);
  fakeDocument.dispatchEvent(new Event("visibilitychange"));
  await flush();
  assert.equal(last().renewals().length, 1);
});

test("a timer that fires late (the machine slept) triggers the same check", async () => {
  const { of, last } = setup({ ttlS: 600 });
  await flush();
  const first = last();
  first.accept();
  sleepFor(900_000);
  await advance(10);
  assert.equal(first.closedWith?.code, 1000);
  assert.match(of("reconnecting")[0].reason, /token expired \(late timer\)/);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("visible while waiting out a backoff connects at once", async () => {
  const { last } = setup({ options: { backoff: { baseMs: 30_000, maxMs: 30_000 } } });
  await flush();
  last().accept();
  await advance(10_100, 100);
  last().serverClose(1006);
  fakeDocument.dispatchEvent(new Event("visibilitychange"));
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
});

for (const [name, withLocks] of [
  ["Web Locks and a BroadcastChannel", true],
  ["a BroadcastChannel alone", false],
]) {
  test(`tabs share one token fetch with ${name}`, async () => {
    if (withLocks) globalThis.navigator.locks = fakeLocks();
    // Spread, reproducible "random" pauses.
    let draw = 0;
    mock.method(Math, "random", () => ((draw += 1) * 0.377) % 1);
    let fetches = 0;
    const mint = () => {
      fetches += 1;
      return undefined;
    };
    const key = `shared-${withLocks}`;
    [0, 1, 2].forEach(() => setup({ ttlS: 600, delayMs: 20, mint, options: { shareTokens: true, shareKey: key } }));
    await advance(200);
    assert.equal(fetches, 1, "one fetch for three tabs connecting");
    assert.equal(new Set(FakeWebSocket.instances.map((ws) => ws.protocols[1])).size, 1);
    const wss = [...FakeWebSocket.instances];
    for (const ws of wss) ws.accept();
    await advance(5_000, 100);
    // The server's notices, spread over a few seconds.
    for (const ws of wss) {
      ws.control({ type: "auth.expiring", exp: nowS() + 60, expires_in: 60 });
      await advance(1_000, 10);
    }
    await advance(200);
    assert.equal(fetches, 2, "one fetch for three renewals");
    const renewed = wss.map((ws) => ws.renewals().map((r) => r.token));
    assert.deepEqual(renewed.map((r) => r.length), [1, 1, 1]);
    assert.equal(new Set(renewed.flat()).size, 1);
  });
}

test("without BroadcastChannel each tab fetches its own token", async () => {
  const saved = globalThis.BroadcastChannel;
  globalThis.BroadcastChannel = undefined;
  try {
    const tabs = [0, 1].map(() => setup({ options: { shareTokens: true } }));
    await flush();
    assert.deepEqual(tabs.map((t) => t.calls()), [1, 1]);
    assert.equal(FakeWebSocket.instances.length, 2);
  } finally {
    globalThis.BroadcastChannel = saved;
  }
});

// A loaded machine: BroadcastChannel messages between the tabs' processes
// take 150 ms, more than the fixed waits of old (a new tab waited 50 ms for
// answers; the fetching tab kept the lock 25 ms after publishing).
test("tabs whose answers arrive late still share one fetch (connect and renewal)", async () => {
  globalThis.navigator.locks = fakeLocks();
  globalThis.BroadcastChannel = DelayedChannel;
  DelayedChannel.delayMs = () => 150;
  let fetches = 0;
  const mint = () => {
    fetches += 1;
    return undefined;
  };
  const tab = () => setup({ ttlS: 600, delayMs: 20, mint, options: { shareTokens: true, shareKey: "slow" } });
  tab();
  await advance(200);
  assert.equal(fetches, 1);
  FakeWebSocket.instances[0].accept();
  await advance(1_000, 100);
  tab();
  tab();
  await advance(1_500);
  assert.equal(fetches, 1, "one fetch for three tabs connecting");
  const wss = [...FakeWebSocket.instances];
  assert.equal(wss.length, 3);
  assert.equal(new Set(wss.map((ws) => ws.protocols[1])).size, 1);
  for (const ws of wss.slice(1)) ws.accept();
  await advance(5_000, 100);
  fetches = 0;
  // The notices reach every tab at once and each renews at once (no jitter):
  // the two tabs queued on the lock take it before the token reaches them.
  for (const ws of wss) ws.control({ type: "auth.expiring", exp: nowS() + 60, expires_in: 60 });
  await advance(3_000);
  assert.equal(fetches, 1, "one fetch for three renewals");
  const renewed = wss.map((ws) => ws.renewals().map((r) => r.token));
  assert.deepEqual(renewed.map((r) => r.length), [1, 1, 1]);
  assert.equal(new Set(renewed.flat()).size, 1);
});

// Scripted tabs, present (their presence lock held) but not AuthSockets.
function scriptedPeers(locks, key, script) {
  return script.map(([id, onWant]) => {
    locks.request(`${key}:present:${id}`, () => new Promise(() => {}));
    const channel = new DelayedChannel(key);
    channel.onmessage = ({ data }) => data.type === "want" && data.id && onWant?.(channel, data.id, id);
    return channel;
  });
}

test("the tab that holds the lock waits for each tab present to answer, and no longer", async () => {
  const locks = fakeLocks();
  globalThis.navigator.locks = locks;
  globalThis.BroadcastChannel = DelayedChannel;
  const later = (type, ms) => (channel, re, from) => setTimeout(() => channel.postMessage({ type, re, from }), ms);
  // One answers `none` after 300 ms, the other closes after 200 ms.
  scriptedPeers(locks, "k", [
    ["slow", later("none", 300)],
    ["leaving", later("gone", 200)],
  ]);
  const { calls } = setup({ options: { shareTokens: true, shareKey: "k" } });
  await advance(250);
  assert.equal(calls(), 0, "waits for the slow tab's answer");
  await advance(100);
  assert.equal(calls(), 1, "fetches once every tab present has answered");
});

test("a tab present that never answers (frozen) delays the fetch by a second at most; close() while asking", async () => {
  const locks = fakeLocks();
  globalThis.navigator.locks = locks;
  globalThis.BroadcastChannel = DelayedChannel;
  scriptedPeers(locks, "f", [["frozen"]]);
  const a = setup({ options: { shareTokens: true, shareKey: "f" } });
  await advance(900);
  assert.equal(a.calls(), 0);
  await advance(200);
  assert.equal(a.calls(), 1);
  // Closed while waiting for the frozen tab: no fetch, no lock left behind.
  const b = setup({ options: { shareTokens: true, shareKey: "f2" } });
  scriptedPeers(locks, "f2", [["frozen"]]);
  await advance(100);
  b.socket.close();
  a.socket.close();
  await advance(2_000, 100);
  assert.equal(b.calls(), 0, "getToken after close()");
  const { held, pending } = await locks.query();
  assert.deepEqual(pending, []);
  assert.deepEqual(held.map((lock) => lock.name).sort(), ["f2:present:frozen", "f:present:frozen"]);
});

test("a presence lock the browser refuses is caught; the tab still fetches", async () => {
  const locks = fakeLocks();
  globalThis.navigator.locks = {
    request: (name, options, callback) =>
      name.includes(":present:") ? Promise.reject(new DOMException("refused", "SecurityError")) : locks.request(name, options, callback),
    query: () => locks.query(),
  };
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(String(reason));
  process.on("unhandledRejection", onUnhandled);
  try {
    const { calls } = setup({ options: { shareTokens: true, shareKey: "r" } });
    await advance(100);
    assert.equal(calls(), 1);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
  assert.deepEqual(unhandled, []);
});

test("backoffDelay stays within its cap for any attempt", () => {
  mock.method(Math, "random", () => 0.999999);
  assert.ok(backoffDelay(1e6, { baseMs: 500, maxMs: 30_000 }) <= 30_000);
});
