#!/usr/bin/env python3
"""A bench worker: a small asyncio HTTP/1.1 server that stands in for an
inference worker behind frontdoor. Run as its own process so that the soak
can SIGKILL it.

  worker.py --id w1.0 [--port 0] [--record FILE]

Prints "PORT <n>" on stdout once listening. Every request it gets is parsed
strictly (bench/lib/fdbench.py); with --record, one JSON line per request
(method, target, the X-Frontdoor-Key-Id values, whether Authorization came,
X-Case, body length, or the parse error) is appended to FILE.

Paths (after frontdoor strips /ep1):
  /ping                   200 {"status":"healthy"} (204 with --ping-status 204: initializing)
  /json, anything else    200 short JSON with Content-Length: {"worker","req","len"}
  /chunked                the same JSON, chunked in two pieces
  /eof                    the same JSON, close-delimited (no length, then close)
  /nocontent              204
  /early                  answers 200 before reading the request body, then closes
  /sse?events=N&ms=M      text/event-stream, chunked: N events M ms apart, each
                          {"worker","seq","req"}, then "data: [DONE]"
"req" echoes the X-Bench-Id request header and "len" the body length, so a
client can tell that the answer is to its own request. The worker id also
comes back in an X-Worker header.
"""
import argparse, asyncio, json, os, sys
from urllib.parse import parse_qs, urlsplit

sys.dont_write_bytecode = True   # leave no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdbench import HttpError, Parser  # noqa: E402


class Worker:
    def __init__(self, wid, record, ping_status=200):
        self.wid, self.ping_status = wid, ping_status
        self.record = open(record, "a", buffering=1) if record else None

    def log(self, **kv):
        if self.record:
            self.record.write(json.dumps(kv) + "\n")

    async def handle(self, reader, writer):
        parser = Parser("request", max_body=64 << 20)
        try:
            while True:
                while not parser.done_msgs:
                    data = await reader.read(65536)
                    if not data:
                        parser.eof()
                        return
                    parser.feed(data)
                    # /early answers as soon as the head is in, before the body.
                    cur = parser.partial
                    if cur is not None and not cur.complete and cur.target.startswith("/early"):
                        self.note(cur, early=True)
                        await self.reply_json(writer, cur, close=True)
                        return
                req = parser.done_msgs.pop(0)
                self.note(req)
                if not await self.respond(writer, req):
                    return
        except HttpError as e:
            # A request cut short is frontdoor giving up on a client that
            # stopped or broke its body: what a proxy must do, not an error.
            if e.truncated:
                self.log(cut=str(e)[:200], worker=self.wid)
            else:
                self.log(parse_error=str(e), worker=self.wid)
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    def note(self, req, early=False):
        if not self.record:
            return
        h = req.headers
        self.log(worker=self.wid, method=req.method, target=req.target[:200], version=req.version,
                 key_ids=[v for k, v in h if k == "x-frontdoor-key-id"],
                 authorization=sum(1 for k, _ in h if k == "authorization"),
                 case=[v[:40] for k, v in h if k == "x-case"], body=len(req.body), early=early,
                 framing=req.framing)

    def payload(self, req):
        bid = req.first("x-bench-id", "")
        return json.dumps({"worker": self.wid, "req": bid, "len": len(req.body)}).encode()

    async def reply_json(self, w, req, close=False):
        body = self.payload(req)
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Worker: {self.wid}\r\n"
                f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n").encode()
        w.write(head + (b"" if req.method == "HEAD" else body))
        await w.drain()

    async def respond(self, w, req):
        url = urlsplit(req.target)
        path, head_only = url.path, req.method == "HEAD"
        close = req.close
        if path == "/ping" and self.ping_status == 204:
            w.write(b"HTTP/1.1 204 No Content\r\n\r\n")   # a model still loading: "initializing"
        elif path == "/ping":
            body = b'{"status":"healthy"}'
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
                    + (b"" if head_only else body))
        elif path.startswith("/chunked"):
            body = self.payload(req)
            h = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Worker: {self.wid}\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n").encode()
            if head_only:
                w.write(h)
            else:
                a, b = body[:7], body[7:]
                w.write(h + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(a), a, len(b), b))
        elif path.startswith("/eof"):
            body = self.payload(req)
            w.write((f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Worker: {self.wid}\r\n"
                     "Connection: close\r\n\r\n").encode() + (b"" if head_only else body))
            await w.drain()
            return False
        elif path.startswith("/early"):
            await self.reply_json(w, req, close=True)
            return False
        elif path.startswith("/nocontent"):
            w.write(f"HTTP/1.1 204 No Content\r\nX-Worker: {self.wid}\r\n\r\n".encode())
        elif path.startswith("/sse"):
            q = parse_qs(url.query)
            n = min(int(q.get("events", ["5"])[0]), 100000)
            ms = min(int(q.get("ms", ["100"])[0]), 60000)
            bid = req.first("x-bench-id", "")
            w.write((f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     f"X-Worker: {self.wid}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
            if head_only:
                await w.drain()
                return not close
            for i in range(n):
                if i:
                    await asyncio.sleep(ms / 1000)
                ev = f'id: {i}\ndata: {{"worker":"{self.wid}","seq":{i},"req":"{bid}"}}\n\n'.encode()
                w.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                await w.drain()
            done = b"data: [DONE]\n\n"
            w.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        else:
            await self.reply_json(w, req, close)
            return not close
        await w.drain()
        return not close


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--record")
    ap.add_argument("--ping-status", type=int, default=200, help="204: stay 'initializing' (SPEC §4)")
    args = ap.parse_args()
    wk = Worker(args.id, args.record, args.ping_status)
    server = await asyncio.start_server(wk.handle, "127.0.0.1", args.port, reuse_address=True, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
