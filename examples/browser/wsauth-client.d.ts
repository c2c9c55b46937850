// Types for wsauth-client.js (wire contract wsauth.v1). Copy both files
// together; no build step is needed.

/** The states of an AuthSocket, in "statechange" events and `state`. */
export type AuthSocketState = "connecting" | "open" | "reconnecting" | "stopped";

export interface AuthSocketOptions {
  /**
   * Fetches a fresh JWT from the application's own HTTPS endpoint. The
   * result is trimmed; a value that cannot travel as a `bearer.` subprotocol
   * entry is an "error" event and a retry with backoff.
   */
  getToken: () => string | Promise<string>;
  /** Real subprotocols offered next to the bearer entry. Default `["wsauth.v1"]`. */
  protocols?: string[];
  /** Renew this long before expiry (at most half a token's life). Default 60 000. */
  renewBeforeMs?: number;
  /** Spread the renewal moment over this window before that. Default 30 000. */
  renewJitterMs?: number;
  /** How long `getToken` may take before it counts as failed, clamped to 1 000 – 120 000 (NaN: the default). Default 10 000. */
  tokenTimeoutMs?: number;
  /** A connection open this long resets the backoff (application data does too). Default 10 000. */
  stableAfterMs?: number;
  /** Attempts in a row that never open before giving up ("close" with gaveUp); 0 never gives up. Default 10. */
  maxFailedAttempts?: number;
  /** Full-jitter reconnect backoff. Default `{ baseMs: 500, maxMs: 30 000 }`. */
  backoff?: { baseMs: number; maxMs: number };
  /** Share one token fetch among the tabs of this origin. Default true. */
  shareTokens?: boolean;
  /** Names the group of sockets that share tokens. Default `"wsauth-client:" + url`. */
  shareKey?: string;
}

export interface OpenDetail {
  /** The subprotocol the server selected (never the bearer entry). */
  protocol: string;
}
export interface RenewedDetail {
  exp: number;
}
export interface RenewRejectedDetail {
  error: string;
  description?: string;
}
export interface ReconnectingDetail {
  /** The close code, or null when no socket closed (token failure, expired while asleep). */
  code: number | null;
  reason: string;
  delayMs: number;
  /** Attempts in a row that did not open so far. */
  failures: number;
}
export interface ErrorDetail {
  /** "token": getToken failed, timed out or returned an unusable token while connecting;
   *  "renew": the same while renewing, or the server left a renewal unanswered for 10 s;
   *  "connect": the WebSocket could not be created. */
  stage: "token" | "renew" | "connect";
  /** A short description; never contains the token. */
  message: string;
}
export interface CloseDetail {
  code: number | null;
  reason: string;
  /** True when the socket stopped after `maxFailedAttempts`; `restart()` tries again. */
  gaveUp: boolean;
}
export interface StateChangeDetail {
  state: AuthSocketState;
}

export interface AuthSocketEventMap {
  open: CustomEvent<OpenDetail>;
  message: MessageEvent;
  renewed: CustomEvent<RenewedDetail>;
  renewrejected: CustomEvent<RenewRejectedDetail>;
  reconnecting: CustomEvent<ReconnectingDetail>;
  error: CustomEvent<ErrorDetail>;
  close: CustomEvent<CloseDetail>;
  statechange: CustomEvent<StateChangeDetail>;
}

export class AuthSocket extends EventTarget {
  constructor(url: string, options: AuthSocketOptions);
  readonly state: AuthSocketState;
  /** Sends application data now, or once (re)connected (up to 1000 queued). Throws when stopped. */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void;
  /**
   * Closes for good, until `restart()`. Throws, as `WebSocket.close()` does and
   * changing nothing, for a code other than 1000 or 3000–4999 or a reason over 123 UTF-8 bytes.
   */
  close(code?: number, reason?: string): void;
  /** Starts a stopped socket again with a fresh token and a fresh count of attempts. */
  restart(): void;
  addEventListener<K extends keyof AuthSocketEventMap>(
    type: K,
    listener: (this: AuthSocket, event: AuthSocketEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof AuthSocketEventMap>(
    type: K,
    listener: (this: AuthSocket, event: AuthSocketEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** The control message in a text frame, or null for application data. */
export function parseControl(text: string): { type: string; [key: string]: unknown } | null;
/** The `exp` claim of a compact JWT, unverified (timing only). */
export function tokenExp(token: string): number | null;
/** The trimmed token if it can travel as a `bearer.` subprotocol entry, else null. */
export function usableToken(value: unknown): string | null;
/** Full-jitter backoff for the given attempt. */
export function backoffDelay(attempt: number, backoff: { baseMs: number; maxMs: number }): number;
/** How long before expiry a token living `lifeMs` is renewed at the latest. */
export function renewLead(lifeMs: number, renewBeforeMs: number): number;
/** Delay until the (jittered) renewal of a token with `remainingMs` left of `lifeMs`. */
export function renewDelay(
  remainingMs: number,
  lifeMs: number,
  options: { renewBeforeMs: number; renewJitterMs: number },
  random?: () => number,
): number;
