// live.js: following an execution over /ws/executions/{trace}: the server
// replays its past events, then sends live ones, then the result. Events
// carry a per-execution seq: after a reconnect the replay overlaps what was
// seen, and the overlap is dropped here. The socket is opened only after a
// REST read of the same execution succeeded, so a refused key or a missing
// execution is reported from that read (with the server's message), not
// as a failed WebSocket handshake.
import { wsURL } from "../api.js";

// follow(trace, {onEvent, onResult, onError, onState, check, onFail}) -> stop()
// check(): a promise that fails when reconnecting is pointless (onFail(err)).
export function follow(trace, handlers) {
  let ws = null;
  let stopped = false;
  let finished = false;
  let lastSeq = -Infinity;
  let retry = null;
  let attempts = 0;

  function open() {
    if (stopped || finished) return;
    handlers.onState && handlers.onState("connecting");
    ws = new WebSocket(wsURL(`/ws/executions/${encodeURIComponent(trace)}`));
    ws.onopen = () => { attempts = 0; handlers.onState && handlers.onState("live"); };
    ws.onmessage = (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch { return; }
      if (e.type === "result") {
        finished = true;
        handlers.onResult && handlers.onResult(e.execution);
        return;
      }
      if (e.type === "error") {
        handlers.onError && handlers.onError(e.error || {});
        return;
      }
      if (typeof e.seq === "number") {
        if (e.seq <= lastSeq) return;
        lastSeq = e.seq;
      }
      handlers.onEvent(e);
    };
    ws.onclose = () => {
      ws = null;
      if (stopped || finished) { handlers.onState && handlers.onState(finished ? "ended" : "closed"); return; }
      // Dropped (a restart, slow_consumer, a network blip): reconnect and
      // replay; what was already seen is skipped by seq.
      attempts++;
      handlers.onState && handlers.onState("reconnecting");
      retry = setTimeout(async () => {
        // The same REST read first: a key revoked meanwhile ends the
        // session there instead of failing handshakes in a loop.
        try {
          if (handlers.check) await handlers.check();
        } catch (err) {
          handlers.onState && handlers.onState("closed");
          if (handlers.onFail) handlers.onFail(err);
          return;
        }
        open();
      }, Math.min(5000, 250 * 2 ** Math.min(attempts, 5)));
    };
  }
  open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    if (!ws) return;
    ws.onmessage = null;
    // Closing a socket still connecting is logged by browsers as a failed
    // connection: let it open, then close it.
    if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(1000);
    else if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  };
}
