// Test server for client_spec.lua: `node server.js INFOFILE` listens on a
// free port of 127.0.0.1 and writes "PORT PID" to INFOFILE when ready.
'use strict';
const http = require('http');
const fs = require('fs');

const infoFile = process.argv[2];
let connections = 0;
const seen = new Set();   // ids of /hang requests received
const closed = new Set(); // ids of /hang requests whose connection closed

function send(res, status, body, headers) {
  res.writeHead(status, Object.assign({ 'content-length': Buffer.byteLength(body) }, headers || {}));
  res.end(body);
}

const server = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://127.0.0.1');
  const q = u.searchParams;
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    switch (u.pathname) {
      case '/hello':
        return send(res, 200, 'hello', { 'content-type': 'text/plain' });
      case '/echo':
        return send(res, 200, JSON.stringify({
          method: req.method, headers: req.headers, body_hex: body.toString('hex'),
        }), { 'content-type': 'application/json' });
      case '/json': {
        let v;
        try { v = JSON.parse(body.toString('utf8')); } catch (e) { return send(res, 400, 'bad json'); }
        return send(res, 201, JSON.stringify({ got: v, ctype: req.headers['content-type'] }),
          { 'content-type': 'application/json; charset=utf-8' });
      }
      case '/badjson':
        return send(res, 200, '{"oops": ', { 'content-type': 'application/json' });
      case '/delay':
        return setTimeout(() => send(res, 200, 'late'), Number(q.get('ms') || 20));
      case '/hang': { // never answered; remembers when the client goes away
        const id = q.get('id');
        seen.add(id);
        req.socket.on('close', () => closed.add(id));
        return;
      }
      case '/seen': {
        const id = q.get('id');
        return send(res, 200, JSON.stringify({ seen: seen.has(id), closed: closed.has(id) }),
          { 'content-type': 'application/json' });
      }
      case '/status': {
        const code = Number(q.get('code'));
        return send(res, code, 'status ' + code);
      }
      case '/headers':
        res.setHeader('X-One', '1');
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        return send(res, 200, 'h');
      case '/big':
        return send(res, 200, 'b'.repeat(Number(q.get('n'))));
      case '/bigchunked': { // no content-length: the size shows while reading
        let left = Number(q.get('n'));
        res.writeHead(200);
        const step = () => {
          const n = Math.min(left, 8192);
          left -= n;
          if (n > 0) res.write('c'.repeat(n));
          if (left > 0) setImmediate(step); else res.end();
        };
        return step();
      }
      case '/chunked': { // three parts, 10 ms apart
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('part1 ');
        setTimeout(() => res.write('part2 '), 10);
        return setTimeout(() => res.end('part3'), 20);
      }
      case '/redirect':
        return send(res, 302, '', { location: '/hello' });
      case '/destroy': // closes the connection without an answer
        return req.socket.destroy();
      case '/connections':
        return send(res, 200, String(connections));
      default:
        return send(res, 404, 'not found');
    }
  });
});

server.on('connection', () => { connections++; });
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(infoFile + '.tmp', server.address().port + ' ' + process.pid);
  fs.renameSync(infoFile + '.tmp', infoFile);
});
// A safety net if the spec dies without stopping us.
setTimeout(() => process.exit(0), 10 * 60 * 1000);
