#!/usr/bin/env node
// A WebSocket client from outside the project, Node's `ws` package (Debian's
// node-ws, or `npm install ws`), against the demo worker's /ws echo: through
// frontdoor (tests/node/run_ws_client_test, run by ctest as node_ws_client),
// or straight at the worker.
//
//   node ws_client_test.js --url ws://127.0.0.1:PORT/demo/ws --token RW [--read-token RO]
//   node ws_client_test.js --url ws://127.0.0.1:PORT/ws          (the worker itself)
//
// With --token: text, binary, fragmented and large messages are echoed as they
// were sent (with and without permessage-deflate), a ping gets its pong, and a
// close with 1000 from the client ends in a close event with 1000. A WebSocket
// upgrade to another path of the worker is answered (404) as a normal response.
// Without a key the handshake gets 401, with a mistyped key 401, and with
// --read-token (a read-only key) 403. Each check prints "ok - ..." or
// "not ok - ..."; the exit status is 0 only if every check passed. Everything
// must be over in --timeout seconds (20).
'use strict';

let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  console.error("ws_client_test: cannot load Node's `ws` package (" + e.message.split('\n')[0] + ')');
  console.error('ws_client_test: install Debian\'s node-ws (scripts/install-deps) and run with ' +
                'NODE_PATH=/usr/share/nodejs, or `npm install ws`');
  process.exit(2);
}
const crypto = require('crypto');

function parseArgs(argv) {
  const opts = { url: '', token: '', readToken: '', timeout: 20 };
  for (let i = 2; i < argv.length; ++i) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--url' && v !== undefined) { opts.url = v; ++i; }
    else if (a === '--token' && v !== undefined) { opts.token = v; ++i; }
    else if (a === '--read-token' && v !== undefined) { opts.readToken = v; ++i; }
    else if (a === '--timeout' && v !== undefined) { opts.timeout = Number(v); ++i; }
    else {
      console.error('usage: ws_client_test.js --url ws://HOST:PORT/PATH [--token RW] ' +
                    '[--read-token RO] [--timeout S]');
      process.exit(2);
    }
  }
  if (!opts.url || !(opts.timeout > 0)) {
    console.error('ws_client_test: --url is required (and --timeout must be positive)');
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv);
let failures = 0;
let checks = 0;

function ok(what) { ++checks; console.log('ok - ' + what); }
function notOk(what, why) { ++checks; ++failures; console.log('not ok - ' + what + ': ' + why); }

const globalTimer = setTimeout(() => {
  notOk('finished within ' + opts.timeout + ' s', 'global timeout');
  process.exit(1);
}, opts.timeout * 1000);

function headersFor(token) {
  return token ? { Authorization: 'Bearer ' + token } : {};
}

function preview(buf) {
  const s = Buffer.isBuffer(buf) ? buf.toString('utf8') : String(buf);
  return JSON.stringify(s.length > 120 ? s.slice(0, 120) + '...' : s);
}

// Opens a WebSocket; resolves with it once open, rejects with a description of
// what happened instead (an HTTP answer, an error, a close).
function open(url, token, wsOpts) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: headersFor(token), handshakeTimeout: 5000, ...wsOpts });
    ws.on('open', () => resolve(ws));
    ws.on('unexpected-response', (req, res) => {
      reject(new Error('handshake answered HTTP ' + res.statusCode));
      req.destroy();
    });
    ws.on('error', (e) => reject(e));
  });
}

// Sends `data` (with `sendOpts`) and resolves with the next message.
function roundTrip(ws, send) {
  return new Promise((resolve, reject) => {
    const onMessage = (data, isBinary) => { cleanup(); resolve({ data, isBinary }); };
    const onClose = (code, reason) => {
      cleanup(); reject(new Error('closed (' + code + ' ' + reason + ') before the echo'));
    };
    const onError = (e) => { cleanup(); reject(e); };
    const cleanup = () => {
      ws.off('message', onMessage); ws.off('close', onClose); ws.off('error', onError);
    };
    ws.on('message', onMessage);
    ws.on('close', onClose);
    ws.on('error', onError);
    send();
  });
}

async function expectEcho(ws, what, payload, binary, fragments) {
  try {
    const echo = await roundTrip(ws, () => {
      if (!fragments) {
        ws.send(payload, { binary });
        return;
      }
      // One message in `fragments` frames: a first frame and continuations.
      const step = Math.ceil(payload.length / fragments);
      for (let off = 0; off < payload.length; off += step) {
        const part = payload.subarray(off, Math.min(off + step, payload.length));
        ws.send(part, { binary, fin: off + step >= payload.length });
      }
    });
    const expected = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
    const got = Buffer.isBuffer(echo.data) ? echo.data : Buffer.concat(echo.data);
    if (echo.isBinary !== binary)
      notOk(what, 'echo came back as ' + (echo.isBinary ? 'binary' : 'text'));
    else if (!got.equals(expected))
      notOk(what, 'echo differs: ' + got.length + ' bytes ' + preview(got) + ', sent ' +
            expected.length + ' bytes ' + preview(expected));
    else
      ok(what);
  } catch (e) {
    notOk(what, e.message);
  }
}

function expectPong(ws, what) {
  return new Promise((resolve) => {
    const payload = Buffer.from('ping-' + crypto.randomBytes(4).toString('hex'));
    const timer = setTimeout(() => { ws.off('pong', onPong); notOk(what, 'no pong in 5 s'); resolve(); }, 5000);
    const onPong = (data) => {
      clearTimeout(timer);
      ws.off('pong', onPong);
      if (data.equals(payload)) ok(what);
      else notOk(what, 'pong payload ' + preview(data) + ', sent ' + preview(payload));
      resolve();
    };
    ws.on('pong', onPong);
    ws.ping(payload);
  });
}

function expectClose(ws, what) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { notOk(what, 'no close event in 5 s'); ws.terminate(); resolve(); }, 5000);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      if (code === 1000) ok(what + ' (reason ' + JSON.stringify(reason.toString()) + ')');
      else notOk(what, 'close event with code ' + code + ' reason ' + JSON.stringify(reason.toString()));
      resolve();
    });
    ws.close(1000, 'done');
  });
}

// The handshake must be answered with `status` and not reach open.
function expectRefused(url, token, status, what) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers: headersFor(token), handshakeTimeout: 5000 });
    let settled = false;
    const done = (fn) => { if (!settled) { settled = true; fn(); resolve(); } };
    ws.on('open', () => done(() => { notOk(what, 'handshake succeeded (101)'); ws.terminate(); }));
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { if (body.length < 512) body += c; });
      const finish = () => done(() => {
        if (res.statusCode === status) ok(what + ' (' + body.trim().slice(0, 160) + ')');
        else notOk(what, 'HTTP ' + res.statusCode + ', expected ' + status + ': ' + body.trim().slice(0, 300));
        req.destroy();
      });
      res.on('end', finish);
      res.on('error', finish);
      setTimeout(finish, 3000);
    });
    ws.on('error', (e) => done(() => notOk(what, 'error instead of HTTP ' + status + ': ' + e.message)));
  });
}

async function echoSession(label, wsOpts) {
  let ws;
  try {
    ws = await open(opts.url, opts.token, wsOpts);
  } catch (e) {
    notOk(label + ': handshake', e.message);
    return;
  }
  ok(label + ': handshake (101), extensions ' + JSON.stringify(ws.extensions || ''));
  await expectEcho(ws, label + ': text message echoed as text', 'hello frontdoor \u2713 \u00e9\u00e8', false);
  await expectEcho(ws, label + ': binary message echoed as binary', crypto.randomBytes(1000), true);
  await expectEcho(ws, label + ': empty text message echoed', '', false);
  await expectEcho(ws, label + ': text in 3 fragments echoed as one message',
                   Buffer.from('fragmented '.repeat(30), 'utf8'), false, 3);
  await expectEcho(ws, label + ': 1 MiB binary message echoed', crypto.randomBytes(1 << 20), true);
  await expectEcho(ws, label + ': 256 KiB compressible text echoed',
                   'abcdefghij'.repeat(25 * 1024 + 200).slice(0, 256 * 1024), false);
  await expectPong(ws, label + ': ping answered with a pong');
  await expectClose(ws, label + ': close 1000 from the client ends in a close event with 1000');
}

async function main() {
  console.log('ws_client_test: ws ' + require('ws/package.json').version + ', node ' +
              process.version + ', ' + opts.url);
  await echoSession('plain', { perMessageDeflate: false });
  await echoSession('deflate offered', {});

  const other = opts.url.replace(/\/ws(\?.*)?$/, '/not-a-websocket');
  if (other !== opts.url)
    await expectRefused(other, opts.token, 404,
                        'an upgrade the worker does not accept: its 404 comes back as a response');

  if (opts.token) {
    await expectRefused(opts.url, '', 401, 'no key: 401');
    const bad = opts.token.slice(0, -1) + (opts.token.endsWith('A') ? 'B' : 'A');
    await expectRefused(opts.url, bad, 401, 'mistyped key: 401');
  }
  if (opts.readToken)
    await expectRefused(opts.url, opts.readToken, 403, 'read-only key: 403');

  clearTimeout(globalTimer);
  console.log('ws_client_test: ' + (checks - failures) + '/' + checks + ' checks passed');
  process.exit(failures === 0 && checks > 0 ? 0 : 1);
}

main().catch((e) => {
  console.log('not ok - unexpected exception: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
