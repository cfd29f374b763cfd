// bench/api/raw_ws.mjs: a minimal RFC 6455 client over node:net, shared by
// the WebSocket benchmarks (bench/api/ws_fanout.mjs, bench/agents/
// delta_latency.mjs). node's WebSocket (undici) costs ~25 µs per message
// in the client, serialised over every socket of the process: with many
// sockets that is most of what a delivery benchmark would measure.
import net from "node:net";
import crypto from "node:crypto";

// Wall clock in ms with sub-ms precision (comparable across processes).
export const wallMs = () => performance.timeOrigin + performance.now();

// The subset of the WebSocket interface used below (onopen, onmessage with
// e.data and e.at, onerror, onclose with e.code, close(code)) over a plain
// socket: server frames are unmasked, ours are masked; text messages only.
// It reads with net's `onread` (into one shared buffer, no stream events)
// and takes the arrival time once per read, before decoding anything: its
// per-message cost is a fraction of a stream-based client's.
const READ_BUF = Buffer.alloc(256 * 1024);
export class RawWebSocket {
  constructor(url) {
    const u = new URL(url);
    this.sock = net.connect({ port: Number(u.port), host: u.hostname, noDelay: true,
      onread: { buffer: READ_BUF, callback: (n, buf) => { this.data(buf.subarray(0, n)); } } });
    this.sock.setNoDelay(true);
    this.buf = null; // unparsed bytes kept from an earlier read (a copy)
    this.upgraded = false;
    this.closed = false;
    this.frags = [];
    const key = crypto.randomBytes(16).toString("base64");
    this.sock.on("connect", () => {
      this.sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n`
        + `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    this.sock.on("error", (err) => { if (this.onerror) this.onerror({ message: err.message }); });
    this.sock.on("close", () => this.finish(1006));
  }

  // chunk: this read's bytes, in the shared buffer (valid until we return).
  data(chunk) {
    const at = wallMs();
    let b = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    this.buf = null;
    if (!this.upgraded) {
      const end = b.indexOf("\r\n\r\n");
      if (end < 0) { this.buf = Buffer.from(b); return; }
      const head = b.toString("latin1", 0, end);
      if (!/^HTTP\/1\.1 101/.test(head)) {
        if (this.onerror) this.onerror({ message: head.split("\r\n")[0] });
        this.sock.destroy();
        return;
      }
      this.upgraded = true;
      b = b.subarray(end + 4);
      if (this.onopen) this.onopen();
    }
    let off = 0;
    while (b.length - off >= 2) {
      let len = b[off + 1] & 0x7f, hdr = 2;
      if (len === 126) { if (b.length - off < 4) break; len = b.readUInt16BE(off + 2); hdr = 4; }
      else if (len === 127) { if (b.length - off < 10) break; len = Number(b.readBigUInt64BE(off + 2)); hdr = 10; }
      if (b.length - off < hdr + len) break;
      const fin = (b[off] & 0x80) !== 0, op = b[off] & 0x0f;
      const start = off + hdr, end = start + len;
      off = end;
      if (op === 8) {
        const code = len >= 2 ? b.readUInt16BE(start) : 1005;
        this.send(8, b.subarray(start, start + Math.min(len, 2)));
        this.sock.end();
        this.finish(code);
        return;
      } else if (op === 9) {
        this.send(10, b.subarray(start, end));
      } else if (op === 1 || op === 2 || op === 0) {
        if (fin && this.frags.length === 0) {
          if (this.onmessage) this.onmessage({ data: b.toString("utf8", start, end), at });
        } else {
          this.frags.push(Buffer.from(b.subarray(start, end)));
          if (fin) {
            const data = Buffer.concat(this.frags).toString("utf8");
            this.frags = [];
            if (this.onmessage) this.onmessage({ data, at });
          }
        }
      }
    }
    if (off < b.length) this.buf = Buffer.from(b.subarray(off));
  }

  send(op, payload) {
    const mask = crypto.randomBytes(4);
    const p = Buffer.from(payload);
    for (let i = 0; i < p.length; i++) p[i] ^= mask[i & 3];
    this.sock.write(Buffer.concat([Buffer.from([0x80 | op, 0x80 | p.length]), mask, p]));
  }

  close(code) {
    if (this.closed || !this.upgraded) { this.sock.destroy(); return; }
    const c = Buffer.alloc(2);
    c.writeUInt16BE(code || 1000);
    this.send(8, c);
  }

  finish(code) {
    if (this.closed) return;
    this.closed = true;
    if (this.onclose) this.onclose({ code });
  }
}
