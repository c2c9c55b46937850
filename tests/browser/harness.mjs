// The scripted WebSocket, window and fake timers (node's mock timers, Date
// included) shared by the browser module's node tests. Importing it
// installs them and registers the per-test setup and checks.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

class FakeWebSocket {
  static OPEN = 1;
  static instances = [];
  // Set to make the next constructor call throw, as a browser does for a
  // protocol entry that is not a token (its message quotes the entry).
  static throwNext = false;
  constructor(url, protocols) {
    if (FakeWebSocket.throwNext) {
      FakeWebSocket.throwNext = false;
      throw new SyntaxError(`Failed to construct 'WebSocket': The subprotocol '${protocols.at(-1)}' is invalid.`);
    }
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
    // As a browser checks them, before anything else.
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new DOMException(`The close code must be either 1000, or between 3000 and 4999. ${code} is neither.`, "InvalidAccessError");
    }
    if (reason !== undefined && new TextEncoder().encode(reason).length > 123) {
      throw new DOMException("The close reason must not be greater than 123 UTF-8 bytes.", "SyntaxError");
    }
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
    this.onmessage?.({ data: typeof data === "string" ? data : data });
  }
  control(message) {
    this.receive(JSON.stringify(message));
  }
  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  renewals() {
    return this.sent.map((text) => JSON.parse(text)).filter((m) => m.type === "auth.renew");
  }
}
globalThis.WebSocket = FakeWebSocket;

// A window of sorts: `online` events on globalThis, a document with a
// visibility state, navigator.onLine; Web Locks only where a test adds them.
const windowEvents = new EventTarget();
globalThis.addEventListener = windowEvents.addEventListener.bind(windowEvents);
globalThis.removeEventListener = windowEvents.removeEventListener.bind(windowEvents);
const fakeDocument = Object.assign(new EventTarget(), { visibilityState: "visible" });
globalThis.document = fakeDocument;
globalThis.navigator = { onLine: true };

// A Web Locks stand-in (navigator.locks), in the spec's order: per name, an
// exclusive request waits for every earlier one, a shared one only for
// exclusive ones; `signal` aborts a request not yet granted (AbortError);
// `query()` lists what is held and pending. `owner` names the fake tab.
function fakeLocks() {
  const held = [];
  const queue = [];
  let clients = 0;
  const grantable = (request) => {
    const mine = held.filter((lock) => lock.name === request.name);
    const ahead = queue.slice(0, queue.indexOf(request)).filter((other) => other.name === request.name);
    if (request.mode === "shared") {
      return mine.every((lock) => lock.mode === "shared") && ahead.every((other) => other.mode === "shared");
    }
    return mine.length === 0 && ahead.length === 0;
  };
  const pump = () => {
    for (const request of [...queue]) {
      if (!grantable(request)) continue;
      queue.splice(queue.indexOf(request), 1);
      held.push(request);
      request.grant();
    }
  };
  return {
    request(name, options, callback) {
      if (typeof options === "function") [options, callback] = [{}, options];
      const { mode = "exclusive", signal } = options ?? {};
      if (signal?.aborted) return Promise.reject(new DOMException("The request was aborted.", "AbortError"));
      return new Promise((resolve, reject) => {
        const request = { name, mode, clientId: `tab-${(clients += 1)}` };
        const onAbort = () => {
          const at = queue.indexOf(request);
          if (at < 0) return;
          queue.splice(at, 1);
          reject(new DOMException("The request was aborted.", "AbortError"));
          pump();
        };
        request.grant = () => {
          signal?.removeEventListener("abort", onAbort);
          // The callback runs in a task of its own, as in a browser.
          Promise.resolve()
            .then(() => callback({ name, mode }))
            .then(resolve, reject)
            .finally(() => {
              held.splice(held.indexOf(request), 1);
              pump();
            });
        };
        signal?.addEventListener("abort", onAbort);
        queue.push(request);
        pump();
      });
    },
    async query() {
      const view = ({ name, mode, clientId }) => ({ name, mode, clientId });
      return { held: held.map(view), pending: queue.map(view) };
    },
  };
}

// A BroadcastChannel whose deliveries take `DelayedChannel.delayMs(data)` ms
// of the fake clock (a loaded machine: messages between processes are slow).
// Like the real one: same name, not to the sender, structured clones, FIFO.
class DelayedChannel {
  static open = new Set();
  static delayMs = () => 0;
  constructor(name) {
    this.name = name;
    this.onmessage = null;
    DelayedChannel.open.add(this);
  }
  postMessage(data) {
    if (!DelayedChannel.open.has(this)) throw new DOMException("BroadcastChannel is closed", "InvalidStateError");
    const ms = DelayedChannel.delayMs(data);
    for (const target of DelayedChannel.open) {
      if (target === this || target.name !== this.name) continue;
      const copy = structuredClone(data);
      setTimeout(() => {
        if (DelayedChannel.open.has(target)) target.onmessage?.({ data: copy });
      }, ms);
    }
  }
  close() {
    DelayedChannel.open.delete(this);
  }
}
const NativeBroadcastChannel = globalThis.BroadcastChannel;

const { AuthSocket, backoffDelay, parseControl, renewDelay, renewLead, tokenExp, usableToken } = await import(
  "../../examples/browser/wsauth-client.js"
);

const T0 = 1_764_000_000_000;
const realSetImmediate = setImmediate;
const flush = async () => {
  for (let i = 0; i < 3; i += 1) await new Promise((resolve) => realSetImmediate(resolve));
};
/** Moves the fake clock on in steps, letting promises settle in between. */
async function advance(ms, step = 10) {
  for (let done = 0; done < ms; done += step) {
    mock.timers.tick(Math.min(step, ms - done));
    await flush();
  }
}
/** The machine sleeps: the clock jumps, no timer runs meanwhile. */
function sleepFor(ms) {
  mock.timers.setTime(Date.now() + ms);
}

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
const jwt = (claims) => `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({ sub: "u", ...claims })}.c2lnbmF0dXJl`;
const nowS = (offsetMs = 0) => Math.floor((Date.now() + offsetMs) / 1000);

let sockets = [];
let allTokens = [];
let allEvents = [];
let maxTimerMs = 0;

beforeEach(() => {
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
  const fakeSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = (fn, ms, ...args) => {
    maxTimerMs = Math.max(maxTimerMs, ms ?? 0);
    return fakeSetTimeout(fn, ms, ...args);
  };
  FakeWebSocket.instances = [];
  FakeWebSocket.throwNext = false;
  fakeDocument.visibilityState = "visible";
  globalThis.navigator = { onLine: true };
  globalThis.BroadcastChannel = NativeBroadcastChannel;
  DelayedChannel.open.clear();
  DelayedChannel.delayMs = () => 0;
  sockets = [];
  allTokens = [];
  allEvents = [];
  maxTimerMs = 0;
});

afterEach(() => {
  for (const socket of sockets) socket.close();
  mock.timers.reset();
  mock.restoreAll();
  // Never a token in an event.
  const text = JSON.stringify(allEvents);
  for (const token of allTokens) {
    assert.ok(!text.includes(token.trim().split(".")[1] ?? token), "a token reached an event detail");
  }
  assert.ok(maxTimerMs <= 2 ** 31 - 1, `a timer of ${maxTimerMs} ms overflows setTimeout`);
});

/**
 * An AuthSocket against the scripted server. `mint(n)` makes the n-th token
 * (default: a JWT living `ttlS` seconds on the server's clock, which is
 * `serverOffsetMs` ahead of the client's).
 */
function setup({ ttlS = 3600, iat = true, serverOffsetMs = 0, delayMs = 0, mint, options = {} } = {}) {
  let calls = 0;
  const tokens = [];
  const getToken = async () => {
    calls += 1;
    const n = calls;
    if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
    const token =
      mint?.(n) ??
      // (+ n - 1: tokens minted in one second of the fake clock still differ.)
      jwt({ exp: nowS(serverOffsetMs) + ttlS + n - 1, ...(iat ? { iat: nowS(serverOffsetMs) } : {}), n });
    if (typeof token === "string") allTokens.push(token);
    tokens.push(token);
    return token;
  };
  const socket = new AuthSocket(options.url ?? "ws://test/ws", {
    getToken,
    backoff: { baseMs: 100, maxMs: 1000 },
    renewJitterMs: 0,
    shareTokens: false,
    ...options,
  });
  sockets.push(socket);
  const events = [];
  for (const type of ["open", "message", "renewed", "renewrejected", "reconnecting", "close", "error", "statechange"]) {
    socket.addEventListener(type, (event) => {
      const entry = { type, detail: event.detail ?? event.data };
      events.push(entry);
      allEvents.push(entry);
    });
  }
  const of = (type) => events.filter((e) => e.type === type).map((e) => e.detail);
  return { socket, events, of, tokens, calls: () => calls, last: () => FakeWebSocket.instances.at(-1) };
}

export { windowEvents, AuthSocket, DelayedChannel, FakeWebSocket, T0, advance, b64url, backoffDelay, fakeDocument, fakeLocks, flush, jwt, nowS, parseControl, renewDelay, renewLead, setup, sleepFor, tokenExp, usableToken };
