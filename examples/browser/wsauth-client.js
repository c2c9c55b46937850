// wsauth-client.js: a browser client for the axum-ws-auth wire contract
// (wsauth.v1). Copy this file into your application; it has no
// dependencies and needs no build step.
//
//   import { AuthSocket } from "./wsauth-client.js";
//   const socket = new AuthSocket("wss://example.com/ws", {
//     getToken: () => fetch("/token", { method: "POST" }).then((r) => r.text()),
//   });
//   socket.addEventListener("message", (event) => console.log(event.data));
//   socket.send("hello");
//
// Browsers cannot set headers on a WebSocket, so the token travels as a
// `bearer.<jwt>` subprotocol entry next to `wsauth.v1`; the server selects
// `wsauth.v1` and never echoes the token. The socket renews in-band when the
// server sends `auth.expiring` and on its own timer from the token's `exp`,
// with one token fetch in flight at most. It reconnects with full-jitter
// backoff when the server closes with 4401 (expired), 4429 (too many
// renewals), 1001 (shutdown) or the connection is lost, and stops for good on
// 4403 (forbidden) and 4400 (bad request).
//
// Events: "open" (detail: { protocol }), "message" (a MessageEvent with the
// application's data; control messages never appear), "renewed" (detail:
// { exp }), "renewrejected" (detail: { error, description }), "reconnecting"
// (detail: { code, reason, delayMs }), "close" (detail: { code, reason }:
// final), "statechange" (detail: { state }).

const CONTROL_PREFIX = "auth.";
const STOP_CODES = new Set([4403, 4400]);
const MAX_RENEW_RETRIES = 3;
const MAX_QUEUED = 1000;

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

/** The `exp` of a compact JWT, unverified: only used to schedule renewal. */
export function tokenExp(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).exp;
    return Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/** Full jitter: uniform in [0, min(max, base * 2^attempt)]. */
export function backoffDelay(attempt, { baseMs, maxMs }) {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** attempt);
}

export class AuthSocket extends EventTarget {
  #url;
  #getToken;
  #protocols;
  #renewBeforeMs;
  #backoff;
  #ws = null;
  #state = "connecting";
  #tokenPromise = null;
  #renewTimer = null;
  #reconnectTimer = null;
  #attempt = 0;
  #rejections = 0;
  #nextId = 0;
  #queue = [];
  #stopped = false;

  /**
   * @param {string} url ws:// or wss:// URL of the authenticated route.
   * @param {object} options
   * @param {() => Promise<string>} options.getToken fetches a fresh JWT from
   *   the application's own HTTPS endpoint.
   * @param {string[]} [options.protocols] real subprotocols to offer.
   * @param {number} [options.renewBeforeMs] renew this long before `exp`
   *   (or halfway through a shorter token's life).
   * @param {{baseMs: number, maxMs: number}} [options.backoff]
   */
  constructor(url, { getToken, protocols = ["wsauth.v1"], renewBeforeMs = 60_000, backoff = { baseMs: 500, maxMs: 30_000 } } = {}) {
    super();
    if (typeof getToken !== "function") throw new TypeError("getToken must be a function");
    this.#url = url;
    this.#getToken = getToken;
    this.#protocols = protocols;
    this.#renewBeforeMs = renewBeforeMs;
    this.#backoff = backoff;
    this.#connect();
  }

  /** "connecting", "open", "reconnecting" or "stopped". */
  get state() {
    return this.#state;
  }

  /** Sends application data now, or once (re)connected. */
  send(data) {
    if (this.#stopped) throw new Error("AuthSocket is stopped");
    if (this.#ws && this.#ws.readyState === WebSocket.OPEN) {
      this.#ws.send(data);
    } else if (this.#queue.length < MAX_QUEUED) {
      this.#queue.push(data);
    } else {
      throw new Error("AuthSocket send queue is full");
    }
  }

  /** Closes for good. */
  close(code = 1000, reason = "") {
    this.#stop(code, reason);
    this.#ws?.close(code, reason);
  }

  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state } }));
  }

  // Single flight: every caller shares the one fetch in progress.
  #fetchToken() {
    this.#tokenPromise ??= Promise.resolve()
      .then(() => this.#getToken())
      .finally(() => {
        this.#tokenPromise = null;
      });
    return this.#tokenPromise;
  }

  async #connect() {
    this.#reconnectTimer = null;
    let token;
    try {
      token = await this.#fetchToken();
    } catch (error) {
      this.#reconnect(null, `token fetch failed: ${error}`);
      return;
    }
    if (this.#stopped) return;
    const ws = new WebSocket(this.#url, [...this.#protocols, `bearer.${token}`]);
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    ws.onopen = () => {
      this.#attempt = 0;
      this.#rejections = 0;
      this.#setState("open");
      this.dispatchEvent(new CustomEvent("open", { detail: { protocol: ws.protocol } }));
      for (const data of this.#queue.splice(0)) ws.send(data);
      this.#scheduleRenewal(tokenExp(token));
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        const control = parseControl(event.data);
        if (control) {
          this.#onControl(control);
          return;
        }
      }
      this.dispatchEvent(new MessageEvent("message", { data: event.data }));
    };
    ws.onclose = (event) => {
      clearTimeout(this.#renewTimer);
      if (this.#ws !== ws || this.#stopped) return;
      this.#ws = null;
      if (STOP_CODES.has(event.code)) {
        this.#stop(event.code, event.reason);
      } else {
        this.#reconnect(event.code, event.reason);
      }
    };
  }

  #onControl(message) {
    switch (message.type) {
      case "auth.expiring":
        this.#renew();
        break;
      case "auth.renewed":
        this.#rejections = 0;
        this.#scheduleRenewal(message.exp);
        this.dispatchEvent(new CustomEvent("renewed", { detail: { exp: message.exp } }));
        break;
      case "auth.renew_rejected":
        this.#rejections += 1;
        this.dispatchEvent(
          new CustomEvent("renewrejected", {
            detail: { error: message.error, description: message.error_description },
          }),
        );
        // Retry a few times; then the connection runs into 4401 and reconnects.
        if (this.#rejections < MAX_RENEW_RETRIES) {
          clearTimeout(this.#renewTimer);
          this.#renewTimer = setTimeout(() => this.#renew(), backoffDelay(this.#rejections, this.#backoff));
        }
        break;
      default:
        // The auth. prefix is reserved: unknown types are not application data.
        break;
    }
  }

  async #renew() {
    clearTimeout(this.#renewTimer);
    const ws = this.#ws;
    let token;
    try {
      token = await this.#fetchToken();
    } catch {
      this.#rejections += 1;
      if (this.#rejections < MAX_RENEW_RETRIES) {
        this.#renewTimer = setTimeout(() => this.#renew(), backoffDelay(this.#rejections, this.#backoff));
      }
      return;
    }
    if (ws === this.#ws && ws?.readyState === WebSocket.OPEN) {
      this.#nextId += 1;
      ws.send(JSON.stringify({ type: "auth.renew", token, id: `r${this.#nextId}` }));
    }
  }

  #scheduleRenewal(exp) {
    clearTimeout(this.#renewTimer);
    if (exp == null) return;
    const remainingMs = exp * 1000 - Date.now();
    const aheadMs = Math.min(this.#renewBeforeMs, remainingMs / 2);
    this.#renewTimer = setTimeout(() => this.#renew(), Math.max(0, remainingMs - aheadMs));
  }

  #reconnect(code, reason) {
    const delayMs = backoffDelay(this.#attempt, this.#backoff);
    this.#attempt += 1;
    this.#setState("reconnecting");
    this.dispatchEvent(new CustomEvent("reconnecting", { detail: { code, reason, delayMs } }));
    this.#reconnectTimer = setTimeout(() => this.#connect(), delayMs);
  }

  #stop(code, reason) {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#reconnectTimer);
    this.#setState("stopped");
    this.dispatchEvent(new CustomEvent("close", { detail: { code, reason } }));
  }
}
