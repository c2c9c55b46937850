// wsauth-client.js: a browser client for the axum-ws-auth wire contract
// (wsauth.v1). Copy this file into your application (types: the
// wsauth-client.d.ts next to it); it has no dependencies and needs no build
// step.
//
//   import { AuthSocket } from "./wsauth-client.js";
//   const socket = new AuthSocket("wss://example.com/ws", {
//     getToken: () => fetch("/token", { method: "POST" }).then((r) => r.text()),
//   });
//   socket.addEventListener("message", (event) => console.log(event.data));
//   socket.addEventListener("close", (event) => event.detail.gaveUp && showRetryButton());
//   socket.send("hello");
//
// Browsers cannot set headers on a WebSocket, so the token travels as a
// `bearer.<jwt>` subprotocol entry next to `wsauth.v1`; the server selects
// `wsauth.v1` and never echoes the token.
//
// Tokens. What `getToken` returns is trimmed (a text body often ends in a
// newline); a value that still cannot travel as a subprotocol (an HTML error
// page, an empty body) is an `error` event and a retry with backoff, never an
// exception. `getToken` is given `tokenTimeoutMs` (10 s) to settle. The tabs
// of one origin share one token fetch per renewal: the tab that holds a Web
// Lock asks the other tabs present for their token, fetches only if none of
// them has one it can use, and hands the token to the others over a
// BroadcastChannel (same-origin only; `shareTokens: false` turns this off,
// `shareKey` names the group). However slowly the tabs answer, they are
// waited for; one that never answers (frozen) for a second at most. Without
// Web Locks the tabs coordinate over the channel alone, and without either
// each tab fetches its own.
//
// Renewal. The socket renews in-band on every `auth.expiring` from the
// server (also an early one: the server asking for re-authentication) and on
// its own timer, `renewBeforeMs` ahead of expiry (or halfway through a
// shorter token's life), at a random moment spread over `renewJitterMs`
// before that, so that clients holding tokens minted together do not renew
// in one burst. Expiry is measured on the server's clock: the offset of the
// local clock is learned from `auth.expiring` (`exp` - `expires_in`) and,
// before that, from the token's `iat`; a local clock that is hours off
// cannot cause a renewal loop. Timers are cut into slices well within
// setTimeout's range; a slice that fires late (the machine slept), a page
// that becomes visible and a network that comes back `online` make the
// socket check the token's remaining life at once: it renews, or reconnects
// with a fresh token if the token has expired meanwhile. A renewal that fails
// is retried: a failed token fetch with capped backoff for as long as the token
// has life left, a rejection by the server (which counts against its rate
// limit) three times, spread over the remaining life; one that failed offline
// is retried as soon as the network is back. A renewal the server leaves
// unanswered for 10 s is an `error` event, and a notice that came meanwhile
// is answered then. An offset that a token the server
// just accepted proves stale (the local clock was corrected) is learned again,
// and the local timer renews at most once between two notices of the server.
//
// Reconnects. After 4401 (expired), 4429 (too many renewals), 1001
// (shutdown) or a lost connection the socket reconnects with full-jitter
// backoff, with a token fetched after the failure (tabs that fail together
// share one fetch). The backoff resets only once a connection has stayed open for
// `stableAfterMs` or has delivered application data, so a server that
// accepts and closes at once is not hit in a tight loop. While the browser
// is offline it waits for the `online` event. It stops for good on 4403
// (forbidden) and 4400 (bad request), and after `maxFailedAttempts`
// attempts in a row that never opened (a handshake the server refuses shows
// up in a browser as 1006 only); `restart()` starts it again.
//
// Events:
//   "open"          detail: { protocol }
//   "message"       a MessageEvent with the application's data; control
//                   messages never appear
//   "renewed"       detail: { exp }
//   "renewrejected" detail: { error, description }
//   "reconnecting"  detail: { code, reason, delayMs, failures }: code is null
//                   when no socket closed (token failure, expired while asleep)
//   "error"         detail: { stage: "token" | "renew" | "connect", message }:
//                   something failed; a retry is scheduled or a "close" follows
//   "close"         detail: { code, reason, gaveUp }: final until restart();
//                   gaveUp is true after maxFailedAttempts
//   "statechange"   detail: { state }
// No event detail, error message or log line ever contains the token.

const CONTROL_PREFIX = "auth.";
const STOP_CODES = new Set([4403, 4400]);
// Server rejections of a renewal retried per token (each counts against the
// server's rate limit); also the attempts when no deadline is known.
const MAX_RENEW_RETRIES = 3;
// Renewal attempts stop this close to the deadline: the connection then
// ends with 4401 and reconnects with a fresh token.
const RENEW_MARGIN_MS = 1_000;
const MAX_QUEUED = 1000;
// A renewal the server has not answered within this long is given up (an
// error event): notices are answered again, one that came meanwhile at once.
const ANSWER_TIMEOUT_MS = 10_000;
// The range `tokenTimeoutMs` is clamped to.
const MIN_TOKEN_TIMEOUT_MS = 1_000;
const MAX_TOKEN_TIMEOUT_MS = 120_000;
// The longest single setTimeout this module arms; longer waits are chained.
// A slice that fires more than LATE_MS after its time means the machine slept
// (or the page was frozen): the socket then re-checks the token at once.
const SLICE_MS = 30_000;
const LATE_MS = 5_000;
// Without Web Locks (or without `navigator.locks.query()`), where the tabs
// present are unknown, a new tab waits this long for their answers.
const ASK_MS = 50;
// The tab that holds the token lock waits at most this long for the answers
// of the other tabs present before it fetches a token itself. Tabs answer at
// once, so this only bounds the wait for one that never does (frozen, or
// closing without a word); it is long enough for a BroadcastChannel message
// between processes of a heavily loaded machine (tens, at times hundreds of
// ms) and short against the time a renewal has (`renewBeforeMs`).
const ANSWER_MS = 1_000;
// RFC 7230 token characters: what a Sec-WebSocket-Protocol entry may hold.
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const OPEN = 1;

/** Whether a text frame is a control message; returns its object if so. */
export function parseControl(text) {
  const body = text.trimStart();
  if (!body.startsWith("{") || !(body.includes(CONTROL_PREFIX) || body.includes("\\u"))) {
    return null;
  }
  let value;
  try {
    value = JSON.parse(body);
  } catch {
    return null;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  return typeof value.type === "string" && value.type.startsWith(CONTROL_PREFIX) ? value : null;
}

/** The claims of a compact JWT, unverified: only used for timing. */
function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
    return claims !== null && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

const numeric = (value) => (typeof value === "number" && Number.isFinite(value) ? value : null);

/** The `exp` of a compact JWT, unverified: only used to schedule renewal. */
export function tokenExp(token) {
  return numeric(tokenClaims(token)?.exp);
}

/** The trimmed token if it can travel as a `bearer.` subprotocol entry, else null. */
export function usableToken(value) {
  if (typeof value !== "string") return null;
  const token = value.trim();
  return token.length > 0 && token.length <= 16_384 && TOKEN_CHARS.test(token) ? token : null;
}

/** Full jitter: uniform in [0, min(max, base * 2^attempt)]. */
export function backoffDelay(attempt, { baseMs, maxMs }) {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
}

/** How long before expiry a token that lives `lifeMs` is renewed, at the latest. */
export function renewLead(lifeMs, renewBeforeMs) {
  return Math.min(renewBeforeMs, Math.max(0, lifeMs) / 2);
}

/**
 * When to renew a token with `remainingMs` left of a life of `lifeMs`:
 * `renewBeforeMs` ahead of expiry (at most half its life), minus a random
 * share of `renewJitterMs` (at most half the time until then).
 */
export function renewDelay(remainingMs, lifeMs, { renewBeforeMs, renewJitterMs }, random = Math.random) {
  const latest = Math.max(0, remainingMs - renewLead(lifeMs, renewBeforeMs));
  return Math.max(0, latest - random() * Math.min(renewJitterMs, latest / 2));
}

class TokenError extends Error {}

/** A short description of a failure that cannot carry a token. */
function describe(error) {
  if (error instanceof TokenError) return error.message;
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return `getToken failed: ${text.slice(0, 200)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** An id for a share, unique among the tabs of an origin. */
function randomId() {
  const bytes = new Uint8Array(12);
  if (typeof globalThis.crypto?.getRandomValues === "function") {
    globalThis.crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// One token fetch for all the tabs of an origin: under a Web Lock, the tab
// that holds the lock fetches and publishes the token on a BroadcastChannel;
// the others take it from there.
//
// No step depends on how fast another tab answers. Each share holds a Web
// Lock of its own, `<name>:present:<id>`, for as long as it lives, so that
// `navigator.locks.query()` names the shares present. Every share answers a
// `want` at once: with its latest token, or `none`. The tab that holds the
// lock and has no acceptable token asks the shares present (a `want` with a
// fresh id) and fetches only once each of them has answered without one (or
// said `gone`), or after ANSWER_MS when one never answers (a frozen tab).
// A tab that takes the lock right after a fetch, before the published token
// has reached it, asks the same way and gets the token from the tab that
// fetched it.
class TokenShare {
  #name;
  #id = randomId();
  #channel = null;
  #latest = null;
  #askedAt = 0;
  #peerFetchingUntil = 0;
  #closed = false;
  // Aborts the lock requests still waiting when the share closes.
  #pending = new Set();
  // The presence lock: its request's AbortController, and what releases it.
  #presence = null;
  #leave = null;
  #asks = 0;
  // Per open ask (by id): the shares that answered it.
  #answers = new Map();
  // Checks run after each message (and on close) by the waits under way.
  #waiters = new Set();

  constructor(name) {
    this.#name = name;
    if (typeof BroadcastChannel !== "function") return;
    // The channel opens before the presence lock is requested: a share that
    // `query()` lists receives every `want` posted after that.
    this.#channel = new BroadcastChannel(name);
    this.#channel.onmessage = ({ data }) => this.#onMessage(data);
    this.#holdPresence();
    this.#channel.postMessage({ type: "want", from: this.#id });
    this.#askedAt = Date.now();
  }

  get #presenceName() {
    return `${this.#name}:present:${this.#id}`;
  }

  #holdPresence() {
    const locks = globalThis.navigator?.locks;
    if (typeof locks?.request !== "function") return;
    const abort = new AbortController();
    this.#presence = abort;
    const held = () =>
      new Promise((resolve) => {
        if (this.#closed) resolve();
        else this.#leave = resolve;
      });
    try {
      // Aborted (closed before it was granted) or refused: nothing to release.
      Promise.resolve(locks.request(this.#presenceName, { signal: abort.signal }, held)).catch(() => {});
    } catch {
      // A Web Locks implementation that throws: this share is not listed.
    }
  }

  close() {
    if (this.#closed) return;
    this.#closed = true;
    for (const abort of this.#pending) abort.abort();
    this.#pending.clear();
    this.#presence?.abort();
    this.#presence = null;
    this.#leave?.();
    this.#leave = null;
    // The waits under way end now (they see the share closed).
    for (const check of [...this.#waiters]) check();
    try {
      // A tab waiting for this share's answer need not wait any longer.
      this.#channel?.postMessage({ type: "gone", from: this.#id });
    } catch {
      // The channel is closed already.
    }
    this.#channel?.close();
    this.#channel = null;
  }

  // A closed share (its socket was closed) fetches nothing more.
  #checkOpen() {
    if (this.#closed) throw new TokenError("the socket was closed while waiting for a token");
  }

  #onMessage(data) {
    if (data === null || typeof data !== "object") return;
    const from = typeof data.from === "string" ? data.from : null;
    if (data.type === "want") {
      // Always answered, so that the asking tab need not wait for a timeout.
      const answer = this.#latest ? { type: "token", entry: this.#latest } : { type: "none" };
      this.#channel?.postMessage({ ...answer, re: data.id ?? null, from: this.#id });
    } else if (data.type === "fetching") {
      this.#peerFetchingUntil = Date.now() + (numeric(data.forMs) ?? 0);
    } else if (data.type === "token" && usableToken(data.entry?.token) === data.entry?.token) {
      this.#peerFetchingUntil = 0;
      this.#offer(data.entry);
    }
    if (from !== null) {
      if (data.type === "gone") {
        for (const answered of this.#answers.values()) answered.add(from);
      } else if (data.type === "token" || data.type === "none") {
        this.#answers.get(data.re)?.add(from);
      }
    }
    for (const check of [...this.#waiters]) check();
  }

  #offer(entry) {
    if (!this.#latest || entry.fetchedAt >= this.#latest.fetchedAt) this.#latest = entry;
  }

  #acceptable(accept) {
    return this.#latest !== null && accept(this.#latest);
  }

  // Resolves once `done()` holds, the share closes or `ms` have passed;
  // checked on every message.
  #until(done, ms) {
    return new Promise((resolve) => {
      let timer;
      const check = () => {
        if (!this.#closed && !done()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      timer = setTimeout(() => {
        this.#waiters.delete(check);
        resolve();
      }, ms);
      this.#waiters.add(check);
      check();
    });
  }

  // The ids of the other shares present (their presence locks, held or
  // about to be), or null when Web Locks cannot tell.
  async #peers(locks) {
    if (typeof locks.query !== "function") return null;
    try {
      const { held = [], pending = [] } = await locks.query();
      const prefix = `${this.#name}:present:`;
      const peers = new Set();
      for (const lock of [...held, ...pending]) {
        const name = lock?.name;
        if (typeof name === "string" && name.startsWith(prefix) && name !== this.#presenceName) {
          peers.add(name.slice(prefix.length));
        }
      }
      return peers;
    } catch {
      return null;
    }
  }

  // Under the lock: asks the shares present for their token and waits until
  // an acceptable one arrives or each of them has answered (at most
  // ANSWER_MS). Without `query()` the shares present are unknown: it waits
  // ASK_MS after this share's first ask, as a best effort.
  async #askPeers(accept, locks) {
    const peers = await this.#peers(locks);
    if (this.#closed || this.#acceptable(accept)) return;
    if (peers === null) {
      const wait = this.#askedAt + ASK_MS - Date.now();
      if (wait > 0) await this.#until(() => this.#acceptable(accept), wait);
      return;
    }
    if (peers.size === 0) return;
    this.#asks += 1;
    const id = `${this.#id}/${this.#asks}`;
    const answered = new Set();
    this.#answers.set(id, answered);
    try {
      this.#channel?.postMessage({ type: "want", id, from: this.#id });
      await this.#until(() => this.#acceptable(accept) || [...peers].every((peer) => answered.has(peer)), ANSWER_MS);
    } finally {
      this.#answers.delete(id);
    }
  }

  async get(accept, fetchOwn, timeoutMs) {
    if (this.#acceptable(accept)) return this.#latest;
    const locks = globalThis.navigator?.locks;
    if (typeof locks?.request !== "function" || !this.#channel) return this.#unlocked(accept, fetchOwn, timeoutMs);
    const abort = new AbortController();
    this.#pending.add(abort);
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    let granted = false;
    try {
      return await locks.request(this.#name, { signal: abort.signal }, async () => {
        granted = true;
        clearTimeout(timer);
        this.#pending.delete(abort);
        this.#checkOpen();
        if (!this.#acceptable(accept)) await this.#askPeers(accept, locks);
        if (this.#acceptable(accept)) return this.#latest;
        return this.#fetchAndPublish(fetchOwn);
      });
    } catch (error) {
      // A tab that never lets go of the lock (frozen) must not block this one.
      if (granted || error?.name !== "AbortError") throw error;
      return this.#fetchAndPublish(fetchOwn);
    } finally {
      clearTimeout(timer);
      this.#pending.delete(abort);
    }
  }

  // BroadcastChannel without Web Locks: after a random pause, wait for a
  // peer that announced a fetch, else announce one. Two tabs that pick about
  // the same moment may both fetch.
  async #unlocked(accept, fetchOwn, timeoutMs) {
    if (this.#channel) {
      const wait = Math.max(this.#askedAt + ASK_MS - Date.now(), 0) + Math.random() * 3 * ASK_MS;
      if (wait > 0) await sleep(wait);
      const until = Math.min(this.#peerFetchingUntil, Date.now() + timeoutMs);
      while (Date.now() < until && this.#peerFetchingUntil && !this.#closed) await sleep(ASK_MS);
      if (this.#acceptable(accept)) return this.#latest;
      this.#channel?.postMessage({ type: "fetching", forMs: timeoutMs, from: this.#id });
    }
    return this.#fetchAndPublish(fetchOwn);
  }

  async #fetchAndPublish(fetchOwn) {
    this.#checkOpen();
    const entry = await fetchOwn();
    this.#offer(entry);
    this.#channel?.postMessage({ type: "token", entry, from: this.#id });
    return entry;
  }
}

export class AuthSocket extends EventTarget {
  #url;
  #getToken;
  #protocols;
  #renewBeforeMs;
  #renewJitterMs;
  #tokenTimeoutMs;
  #stableAfterMs;
  #maxFailedAttempts;
  #backoff;
  #shareKey;
  #share = null;
  #ws = null;
  #state = "connecting";
  #tokenPromise = null;
  #timers = new Map();
  #attempt = 0;
  #failures = 0;
  #rejections = 0;
  #nextId = 0;
  #queue = [];
  #stopped = false;
  #run = 0;
  // The connection's token: { exp, iat, fetchedAt, deadline }, deadline on
  // the local clock (ms) or null when unknown.
  #current = null;
  // Server clock minus local clock, learned from `auth.expiring`.
  #skewMs = null;
  #ownRenewals = 0;
  // false, or the moment (local clock) after which a token must have been
  // fetched to serve the next connection.
  #reconnectFresh = false;
  // The token of the connection that failed last, never reused by a fresh connect.
  #failedToken = null;
  #renewing = false;
  // A notice came while a sent renewal waited for its answer.
  #askedMeanwhile = false;
  // A renewal was started and has not been accepted yet (failed offline, say).
  #renewOwed = false;
  // Failed renewal attempts since the last accepted one.
  #renewFailures = 0;
  #sentTokens = new Map();
  #onVisibility = () => {
    if (globalThis.document?.visibilityState === "visible") this.#wake("visible");
  };
  #onOnline = () => this.#wake("online");

  /**
   * @param {string} url ws:// or wss:// URL of the authenticated route.
   * @param {import("./wsauth-client").AuthSocketOptions} options see wsauth-client.d.ts.
   */
  constructor(
    url,
    {
      getToken,
      protocols = ["wsauth.v1"],
      renewBeforeMs = 60_000,
      renewJitterMs = 30_000,
      tokenTimeoutMs = 10_000,
      stableAfterMs = 10_000,
      maxFailedAttempts = 10,
      backoff = { baseMs: 500, maxMs: 30_000 },
      shareTokens = true,
      shareKey = `wsauth-client:${url}`,
    } = {},
  ) {
    super();
    if (typeof getToken !== "function") throw new TypeError("getToken must be a function");
    this.#url = url;
    this.#getToken = getToken;
    this.#protocols = protocols;
    this.#renewBeforeMs = renewBeforeMs;
    this.#renewJitterMs = renewJitterMs;
    // 0, NaN or Infinity would time every fetch out at once or never.
    this.#tokenTimeoutMs = Number.isNaN(Number(tokenTimeoutMs))
      ? 10_000
      : Math.min(Math.max(Number(tokenTimeoutMs), MIN_TOKEN_TIMEOUT_MS), MAX_TOKEN_TIMEOUT_MS);
    this.#stableAfterMs = stableAfterMs;
    this.#maxFailedAttempts = maxFailedAttempts;
    this.#backoff = backoff;
    this.#shareKey = shareTokens ? shareKey : null;
    this.#start(false);
  }

  /** "connecting", "open", "reconnecting" or "stopped". */
  get state() {
    return this.#state;
  }

  /** Sends application data now, or once (re)connected. */
  send(data) {
    if (this.#stopped) throw new Error("AuthSocket is stopped");
    if (this.#ws && this.#ws.readyState === OPEN) {
      this.#ws.send(data);
    } else if (this.#queue.length < MAX_QUEUED) {
      this.#queue.push(data);
    } else {
      throw new Error("AuthSocket send queue is full");
    }
  }

  /**
   * Closes for good (until `restart()`). A code or reason that a WebSocket
   * refuses (a code other than 1000 or 3000-4999, a reason over 123 UTF-8
   * bytes) throws as `WebSocket.close()` does, and changes nothing.
   */
  close(code = 1000, reason = "") {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new DOMException(`close code ${code} is neither 1000 nor in 3000-4999`, "InvalidAccessError");
    }
    if (new TextEncoder().encode(String(reason)).length > 123) {
      throw new DOMException("the close reason is longer than 123 UTF-8 bytes", "SyntaxError");
    }
    const ws = this.#ws;
    this.#ws = null;
    this.#stop(code, reason, false);
    ws?.close(code, reason);
  }

  /** Starts a stopped socket again, with a fresh token and a fresh count of attempts. */
  restart() {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#attempt = 0;
    this.#failures = 0;
    this.#setState("connecting");
    this.#start(Date.now());
  }

  #start(fresh) {
    if (this.#shareKey !== null) this.#share = new TokenShare(this.#shareKey);
    globalThis.document?.addEventListener?.("visibilitychange", this.#onVisibility);
    globalThis.addEventListener?.("online", this.#onOnline);
    this.#connect({ fresh });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.#emit("statechange", { state });
  }

  #error(stage, message) {
    this.#emit("error", { stage, message });
  }

  // Timers, one per kind, cut into slices; a slice that fires late means the
  // machine slept: renewal is then re-planned from the token's remaining life.
  #after(kind, ms, callback) {
    this.#clear(kind);
    // Nothing runs after close() (also when an event listener called it).
    if (this.#stopped) return;
    const due = Date.now() + Math.max(0, ms);
    const step = () => {
      const slice = Math.min(Math.max(0, due - Date.now()), SLICE_MS);
      const expected = Date.now() + slice;
      this.#timers.set(
        kind,
        setTimeout(() => {
          this.#timers.delete(kind);
          if (Date.now() - expected > LATE_MS && kind === "renew" && this.#expiredMeanwhile("late timer")) {
            return;
          }
          if (Date.now() >= due) {
            callback();
          } else {
            step();
          }
        }, slice),
      );
    };
    step();
  }

  #clear(kind) {
    clearTimeout(this.#timers.get(kind));
    this.#timers.delete(kind);
  }

  // Single flight: every caller in this tab shares the one fetch in progress;
  // the fetch itself is bounded by tokenTimeoutMs, so it cannot block forever.
  #fetchToken({ fresh, newerThan }) {
    this.#tokenPromise ??= this.#obtain(fresh, newerThan).finally(() => {
      this.#tokenPromise = null;
    });
    return this.#tokenPromise;
  }

  #obtain(fresh, newerThan) {
    const fetchOwn = () => this.#callGetToken();
    if (!this.#share) return fetchOwn();
    // A fresh token (after a failure at time `fresh`) may come from another
    // tab if it was fetched after that failure: tabs that fail together (a
    // shared 4401, waking from sleep) share one fetch.
    const accept = (entry) =>
      (fresh === false || (entry.fetchedAt >= fresh && entry.token !== this.#failedToken)) && this.#reusable(entry, newerThan);
    return this.#share.get(accept, fetchOwn, this.#tokenTimeoutMs);
  }

  async #callGetToken() {
    const fetchedAt = Date.now();
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new TokenError(`getToken did not settle within ${this.#tokenTimeoutMs} ms`)),
        this.#tokenTimeoutMs,
      );
    });
    let value;
    try {
      value = await Promise.race([Promise.resolve().then(() => this.#getToken()), timeout]);
    } finally {
      clearTimeout(timer);
    }
    const token = usableToken(value);
    if (token === null) {
      throw new TokenError(
        `getToken returned an unusable token (${typeof value === "string" ? `${value.length} characters, empty or not all token characters after trimming` : typeof value})`,
      );
    }
    const claims = tokenClaims(token);
    return { token, exp: numeric(claims?.exp), iat: numeric(claims?.iat), fetchedAt };
  }

  // Server clock minus local clock: from the server's notice, else from the
  // token's `iat` (minted about when it was fetched), else unknown.
  #skewFor(entry) {
    if (this.#skewMs !== null) return this.#skewMs;
    // `iat` is rounded down as well (by up to a second).
    if (entry?.iat != null) return (entry.iat + 0.5) * 1000 - entry.fetchedAt;
    return null;
  }

  // Whether a token another fetch (or tab) got can serve here: newer than the
  // connection's token when renewing, and not itself due for renewal.
  #reusable(entry, newerThan) {
    if (newerThan !== null && !(entry.exp !== null && entry.exp > newerThan)) return false;
    if (entry.exp === null) return false;
    const skew = this.#skewFor(entry) ?? 0;
    const deadline = entry.exp * 1000 - skew;
    return deadline - Date.now() > renewLead(deadline - entry.fetchedAt, this.#renewBeforeMs);
  }

  async #connect({ fresh }) {
    this.#clear("reconnect");
    if (this.#stopped) return;
    const run = ++this.#run;
    let entry;
    try {
      entry = await this.#fetchToken({ fresh, newerThan: null });
    } catch (error) {
      if (this.#stopped || run !== this.#run) return;
      this.#error("token", describe(error));
      this.#reconnect(null, "no usable token", true);
      return;
    }
    if (this.#stopped || run !== this.#run) return;
    let ws;
    try {
      ws = new WebSocket(this.#url, [...this.#protocols, `bearer.${entry.token}`]);
    } catch (error) {
      // The browser's message may quote the protocol list: only its name is kept.
      this.#error("connect", `the WebSocket could not be created (${error?.name ?? "Error"})`);
      this.#reconnect(null, "the WebSocket could not be created", true);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      opened = true;
      this.#renewing = false;
      this.#failures = 0;
      this.#ownRenewals = 0;
      this.#rejections = 0;
      this.#renewFailures = 0;
      this.#renewOwed = false;
      // A listener may call close() (or restart()): check after each event.
      const live = () => this.#ws === ws && !this.#stopped;
      this.#setState("open");
      if (!live()) return;
      this.#emit("open", { protocol: ws.protocol });
      if (!live()) return;
      this.#after("stable", this.#stableAfterMs, () => {
        this.#attempt = 0;
      });
      for (const data of this.#queue.splice(0)) ws.send(data);
      this.#adopt(entry, entry.exp);
    };
    ws.onmessage = (event) => {
      if (this.#ws !== ws) return;
      if (typeof event.data === "string") {
        const control = parseControl(event.data);
        if (control) {
          this.#onControl(control);
          return;
        }
      }
      // Application data: this connection works, the backoff starts over.
      this.#attempt = 0;
      this.#clear("stable");
      this.dispatchEvent(new MessageEvent("message", { data: event.data }));
    };
    ws.onclose = (event) => {
      if (this.#ws !== ws || this.#stopped) return;
      this.#ws = null;
      this.#failedToken = this.#current?.token ?? entry.token;
      this.#current = null;
      this.#renewing = false;
      this.#clear("renew");
      this.#clear("answer");
      this.#clear("stable");
      if (STOP_CODES.has(event.code)) {
        this.#stop(event.code, event.reason, false);
      } else {
        this.#reconnect(event.code, event.reason, !opened, event.code === 4401 || !opened);
      }
    };
  }

  // The connection now runs on a token with this `exp`.
  #adopt(entry, exp) {
    let skew = this.#skewFor(entry);
    let deadline = exp === null ? null : exp * 1000 - (skew ?? 0);
    // A token the server just accepted has not expired. If the local clock
    // says otherwise, the offset learned earlier is stale (the local clock
    // was corrected since): forget it and learn it again from the token's
    // `iat` or the server's next notice; until then only the notice decides.
    if (deadline !== null && deadline <= Date.now() && this.#skewMs !== null) {
      this.#skewMs = null;
      skew = this.#skewFor(entry);
      deadline = exp * 1000 - (skew ?? 0);
    }
    if (deadline !== null && deadline <= Date.now()) {
      skew = null;
      deadline = null;
    }
    const life = deadline === null ? null : deadline - Math.min(Date.now(), entry.fetchedAt ?? Date.now());
    this.#current = { token: entry.token ?? null, exp, deadline, life, skewKnown: skew !== null };
    this.#scheduleRenewal();
  }

  #remaining() {
    return this.#current?.deadline == null ? null : this.#current.deadline - Date.now();
  }

  #scheduleRenewal() {
    this.#clear("renew");
    const remaining = this.#remaining();
    if (remaining === null) return;
    // The local timer renews at most once without a notice from the server
    // in between: a local clock that is off (or was corrected after the
    // offset was learned) cannot make it renew again and again.
    if (this.#ownRenewals >= 1) return;
    const delay = renewDelay(remaining, this.#current.life, {
      renewBeforeMs: this.#renewBeforeMs,
      renewJitterMs: this.#renewJitterMs,
    });
    this.#after("renew", delay, () => {
      this.#ownRenewals += 1;
      this.#renew();
    });
  }

  #onControl(message) {
    switch (message.type) {
      case "auth.expiring": {
        const exp = numeric(message.exp);
        const expiresIn = numeric(message.expires_in);
        // Frames arrive in order: a notice that comes after `auth.renewed` is
        // a new request (an early one asks for re-authentication), even when
        // its `exp` equals an earlier token's. One that crossed our renewal on
        // the wire comes before the answer and is served by that renewal.
        this.#ownRenewals = 0;
        // While a renewal waits for its answer, the notice is served by it;
        // if that answer never comes, the notice is answered then.
        if (this.#renewing) this.#askedMeanwhile = true;
        if (expiresIn !== null && this.#current) {
          // The server's word on time: the deadline is `expires_in` from now.
          // `expires_in` is rounded down: the server's clock read between
          // exp - expires_in - 1 and exp - expires_in; take the middle.
          if (exp !== null) this.#skewMs = (exp - expiresIn - 0.5) * 1000 - Date.now();
          this.#current.deadline = Date.now() + expiresIn * 1000;
          this.#current.skewKnown = true;
        }
        const window = Math.min(this.#renewJitterMs, Math.max(0, (expiresIn ?? 0) * 1000) / 4);
        this.#after("renew", Math.random() * window, () => this.#renew());
        break;
      }
      case "auth.renewed": {
        this.#clear("answer");
        this.#renewing = false;
        this.#renewOwed = false;
        this.#renewFailures = 0;
        this.#rejections = 0;
        const exp = numeric(message.exp);
        const sent = this.#sentTokens.get(message.id);
        this.#sentTokens.clear();
        this.#adopt(sent ?? { iat: null, fetchedAt: Date.now() }, exp);
        this.#emit("renewed", { exp: message.exp });
        break;
      }
      case "auth.renew_rejected":
        this.#clear("answer");
        this.#renewing = false;
        this.#rejections += 1;
        this.#emit("renewrejected", { error: message.error, description: message.error_description });
        // Each rejection counts against the server's rate limit: retry a few
        // times, spread over the token's remaining life; then the connection
        // runs into 4401 and reconnects.
        if (this.#stopped) break;
        if (this.#rejections >= MAX_RENEW_RETRIES || !this.#retryRenewal(0, MAX_RENEW_RETRIES - this.#rejections)) {
          // Nothing more is owed: a wake-up does not renew again (the rate limit).
          this.#renewOwed = false;
        }
        break;
      default:
        // The auth. prefix is reserved: unknown types are not application data.
        break;
    }
  }

  async #renew() {
    this.#clear("renew");
    const ws = this.#ws;
    // One renewal at a time: a notice that comes while one is under way is
    // answered by it.
    if (!ws || ws.readyState !== OPEN || this.#renewing) return;
    this.#renewing = true;
    this.#renewOwed = true;
    let entry;
    try {
      entry = await this.#fetchToken({ fresh: false, newerThan: this.#current?.exp ?? null });
    } catch (error) {
      if (ws !== this.#ws || this.#stopped) return;
      this.#renewing = false;
      if (globalThis.navigator?.onLine === false) {
        // The renewal stays owed: the `online` event renews.
        this.#error("renew", `${describe(error)}; offline, waiting to be online`);
        return;
      }
      const retry = this.#retryRenewal(0);
      this.#error("renew", `${describe(error)}; ${retry ? "retrying" : "the connection ends at expiry and reconnects"}`);
      if (!retry) this.#clear("renew");
      return;
    }
    const currentExp = this.#current?.exp ?? null;
    if (ws === this.#ws && entry.exp !== null && currentExp !== null && entry.exp <= currentExp) {
      // The server refuses a renewal that does not extend the connection.
      this.#renewing = false;
      const retry = this.#retryRenewal(1_000);
      this.#error("renew", `getToken returned a token that expires no later than the current one${retry ? "; retrying" : ""}`);
      if (!retry) this.#clear("renew");
      return;
    }
    if (ws === this.#ws && ws.readyState === OPEN) {
      this.#nextId += 1;
      const id = `r${this.#nextId}`;
      this.#sentTokens.set(id, entry);
      ws.send(JSON.stringify({ type: "auth.renew", token: entry.token, id }));
      this.#askedMeanwhile = false;
      this.#after("answer", ANSWER_TIMEOUT_MS, () => {
        if (ws !== this.#ws || !this.#renewing) return;
        this.#renewing = false;
        const asked = this.#askedMeanwhile;
        this.#askedMeanwhile = false;
        this.#error(
          "renew",
          `the server did not answer the renewal within ${ANSWER_TIMEOUT_MS} ms${asked ? "; answering its later notice" : ""}`,
        );
        if (asked && ws === this.#ws && !this.#stopped) this.#renew();
      });
    } else if (ws === this.#ws) {
      this.#renewing = false;
    }
  }

  // Plans the next attempt after a failed renewal and returns whether there
  // is one. Token fetches that fail cost the server nothing: they are retried
  // with capped backoff for as long as the token has life left, each wait at
  // most a quarter of that life, so that a token endpoint that is down for a
  // while does not cost the connection. `attemptsLeft` spreads the few
  // attempts the server's rate limit allows over the remaining life instead.
  #retryRenewal(minMs, attemptsLeft = Infinity) {
    this.#renewFailures += 1;
    const remaining = this.#remaining();
    let delay;
    if (remaining === null) {
      // No deadline known: a few attempts; the server's notice comes anyway.
      if (this.#renewFailures >= MAX_RENEW_RETRIES) return false;
      delay = backoffDelay(this.#renewFailures, this.#backoff);
    } else {
      const budget = remaining - RENEW_MARGIN_MS;
      if (budget <= minMs) return false;
      const ceiling = Math.min(this.#backoff.maxMs, this.#backoff.baseMs * 2 ** Math.min(this.#renewFailures, 30));
      const spread = Number.isFinite(attemptsLeft) ? budget / (attemptsLeft + 1) : 0;
      // Equal jitter: at least half the step, so that retries never bunch up.
      const step = Math.min(Math.max(ceiling, spread), budget / 4);
      delay = step / 2 + Math.random() * (step / 2);
    }
    this.#after("renew", minMs + delay, () => this.#renew());
    return true;
  }

  // Woken up (page visible, network back, a timer fired late): act on the
  // token's remaining life now instead of waiting for throttled timers.
  #wake(why) {
    if (this.#stopped) return;
    if (this.#timers.has("reconnect")) {
      this.#connect({ fresh: this.#reconnectFresh });
      return;
    }
    if (this.#expiredMeanwhile(why)) return;
    const remaining = this.#remaining();
    // A renewal that failed (offline, say) is still owed whatever is left.
    const owed = this.#renewOwed && !this.#renewing;
    if (this.#ws && (owed || (remaining !== null && remaining <= renewLead(this.#current.life, this.#renewBeforeMs)))) {
      this.#renew();
    }
    // Otherwise the renewal timer (or the server's notice) is still ahead.
  }

  // If the connection's token expired meanwhile, drop the stale socket and
  // reconnect with a fresh token at once.
  #expiredMeanwhile(why) {
    const ws = this.#ws;
    if (!ws || this.#state !== "open") return false;
    const remaining = this.#remaining();
    if (remaining === null || remaining > 0) return false;
    // The socket is stale (its 4401 may not even have arrived): do not renew
    // over it, reconnect with a fresh token.
    this.#ws = null;
    this.#failedToken = this.#current?.token ?? null;
    this.#current = null;
    this.#renewing = false;
    this.#clear("renew");
    this.#clear("answer");
    this.#clear("stable");
    ws.close(1000, "token expired");
    this.#setState("reconnecting");
    if (this.#stopped) return true;
    this.#emit("reconnecting", { code: null, reason: `token expired (${why})`, delayMs: 0, failures: this.#failures });
    this.#connect({ fresh: Date.now() });
    return true;
  }

  #reconnect(code, reason, failed, fresh = failed) {
    if (this.#stopped) return;
    const freshSince = fresh ? Date.now() : false;
    const offline = globalThis.navigator?.onLine === false;
    if (failed && !offline) this.#failures += 1;
    if (this.#maxFailedAttempts > 0 && this.#failures >= this.#maxFailedAttempts) {
      this.#stop(code, `gave up after ${this.#failures} attempts that did not open${reason ? ` (last: ${reason})` : ""}`, true);
      return;
    }
    // Offline, the `online` event brings it back; the timer is a fallback.
    const delayMs = offline ? this.#backoff.maxMs : backoffDelay(this.#attempt, this.#backoff);
    if (!offline) this.#attempt += 1;
    this.#reconnectFresh = freshSince;
    this.#setState("reconnecting");
    if (this.#stopped) return;
    this.#emit("reconnecting", { code, reason, delayMs, failures: this.#failures });
    if (this.#stopped) return;
    this.#after("reconnect", delayMs, () => this.#connect({ fresh: freshSince }));
  }

  #stop(code, reason, gaveUp) {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#run += 1;
    for (const kind of [...this.#timers.keys()]) this.#clear(kind);
    this.#current = null;
    this.#renewing = false;
    this.#share?.close();
    this.#share = null;
    this.#tokenPromise = null;
    globalThis.document?.removeEventListener?.("visibilitychange", this.#onVisibility);
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#setState("stopped");
    this.#emit("close", { code, reason, gaveUp });
  }
}
