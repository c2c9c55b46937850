// The browser module's state machine with a scripted WebSocket, under
// node's built-in test runner: `node --test tests/browser/`.
import assert from "node:assert/strict";
import { after, test } from "node:test";

class FakeWebSocket {
  static OPEN = 1;
  static instances = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.protocol = "";
    FakeWebSocket.instances.push(this);
  }
  send(data) {
    assert.equal(this.readyState, FakeWebSocket.OPEN, "send on a socket that is not open");
    this.sent.push(data);
  }
  close(code, reason) {
    this.readyState = 3;
    this.closedWith = { code, reason };
  }
  // Server side of the script.
  accept(protocol = "wsauth.v1") {
    this.readyState = FakeWebSocket.OPEN;
    this.protocol = protocol;
    this.onopen?.();
  }
  receive(data) {
    this.onmessage?.({ data });
  }
  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}
globalThis.WebSocket = FakeWebSocket;

// Every socket is closed at the end, so no renewal timer keeps node alive.
const created = [];
after(() => {
  for (const socket of created) socket.close();
});

const { AuthSocket, parseControl, tokenExp } = await import("../../examples/browser/wsauth-client.js");

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));
const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
const jwt = (exp, n) => `${b64url({ alg: "HS256" })}.${b64url({ sub: "u", exp, n })}.sig${n}`;
const inOneHour = () => Math.floor(Date.now() / 1000) + 3600;

function setup({ delayMs = 0 } = {}) {
  FakeWebSocket.instances = [];
  let calls = 0;
  const tokens = [];
  const socket = new AuthSocket("ws://test/ws", {
    getToken: async () => {
      calls += 1;
      if (delayMs) await tick(delayMs);
      const token = jwt(inOneHour(), calls);
      tokens.push(token);
      return token;
    },
    backoff: { baseMs: 1, maxMs: 4 },
  });
  created.push(socket);
  const events = [];
  for (const type of ["open", "message", "renewed", "renewrejected", "reconnecting", "close"]) {
    socket.addEventListener(type, (event) => events.push({ type, detail: event.detail ?? event.data }));
  }
  return { socket, events, tokens, calls: () => calls, last: () => FakeWebSocket.instances.at(-1) };
}

test("control messages are recognised exactly as the contract says", () => {
  assert.equal(parseControl('{"type":"auth.expiring","exp":1,"expires_in":0}').type, "auth.expiring");
  assert.equal(parseControl(' {"type":"\\u0061uth.renewed","exp":2}').type, "auth.renewed");
  for (const text of ['{"type":"chat","body":"auth.x"}', '{"type":"Auth.x"}', '[{"type":"auth.x"}]', "auth.renewed", "{ broken"]) {
    assert.equal(parseControl(text), null, text);
  }
  assert.equal(tokenExp(jwt(1764000000, 0)), 1764000000);
  assert.equal(tokenExp("garbage"), null);
});

test("offers wsauth.v1 plus the bearer entry and hides control messages", async () => {
  const { events, tokens, last } = setup();
  await tick();
  assert.deepEqual(last().protocols, ["wsauth.v1", `bearer.${tokens[0]}`]);
  last().accept();
  last().receive("hello");
  last().receive('{"type":"auth.renewed","exp":1764003600,"id":"r1"}');
  last().receive(new Uint8Array([1, 2]).buffer);
  assert.deepEqual(
    events.map((e) => e.type),
    ["open", "message", "renewed", "message"],
  );
  assert.equal(events[1].detail, "hello");
});

test("renews on the server's notice with one token fetch in flight", async () => {
  const { last, calls, tokens } = setup({ delayMs: 20 });
  await tick(30);
  last().accept();
  last().receive('{"type":"auth.expiring","exp":1,"expires_in":0}');
  last().receive('{"type":"auth.expiring","exp":1,"expires_in":0}');
  await tick(40);
  assert.equal(calls(), 2, "the two notices share one fetch");
  const renewals = last().sent.map((text) => JSON.parse(text));
  assert.equal(renewals.length, 2, "both notices send the shared token");
  assert.deepEqual(renewals.map((r) => r.type), ["auth.renew", "auth.renew"]);
  assert.equal(renewals[0].token, tokens[1]);
});

for (const code of [4401, 1001, 4429, 1006]) {
  test(`reconnects with backoff and a fresh token after ${code}`, async () => {
    const { socket, events, tokens, last } = setup();
    await tick();
    const first = last();
    first.accept();
    first.serverClose(code, "bye");
    assert.equal(socket.state, "reconnecting");
    socket.send("queued while away");
    const reconnecting = events.find((e) => e.type === "reconnecting");
    assert.equal(reconnecting.detail.code, code);
    assert.ok(reconnecting.detail.delayMs >= 0 && reconnecting.detail.delayMs <= 1);
    await tick(20);
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
    await tick();
    last().accept();
    last().serverClose(code, "forbidden");
    await tick(30);
    assert.equal(socket.state, "stopped");
    assert.equal(FakeWebSocket.instances.length, 1, "no reconnect");
    assert.deepEqual(events.at(-1), { type: "close", detail: { code, reason: "forbidden" } });
    assert.throws(() => socket.send("x"));
  });
}

test("a failing token endpoint is retried with backoff", async () => {
  FakeWebSocket.instances = [];
  let calls = 0;
  const socket = new AuthSocket("ws://test/ws", {
    getToken: async () => {
      calls += 1;
      if (calls < 3) throw new Error("503");
      return jwt(inOneHour(), calls);
    },
    backoff: { baseMs: 1, maxMs: 2 },
  });
  created.push(socket);
  await tick(40);
  assert.equal(calls, 3);
  assert.equal(FakeWebSocket.instances.length, 1);
});
