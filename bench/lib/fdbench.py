"""Shared pieces of bench/soak and bench/wire-fuzz: tokens and key stores, a
frontdoor process with its /proc numbers, and a strict incremental HTTP/1.1
parser used on both sides of the proxy (responses on the client side,
requests in the recording worker).

Stdlib only. Every process started here is stopped by PID.
"""
import hashlib, os, re, resource, signal, socket, subprocess, sys, tempfile, time, zlib
from collections import deque

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)


def frontdoor_bin():
    return os.environ.get("FRONTDOOR_BIN", os.path.join(BENCH, "..", "build", "frontdoor"))


def token(rng=None):
    """A well-formed rpa_ token (SPEC §3: 34 random base62 + 6 of CRC-32)."""
    raw = rng.randbytes(34) if rng else os.urandom(34)
    body = "rpa_" + "".join(B62[b % 62] for b in raw)
    n, tail = zlib.crc32(body.encode()), ""
    for _ in range(6):
        n, r = divmod(n, 62)
        tail = B62[r] + tail
    return body + tail


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def raise_nofile(want):
    """Raise the soft descriptor limit (children inherit it, frontdoor too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, want))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def key_entry(kid, tok, enabled=True, expires=None):
    return (f"  - id: {kid}\n    name: {kid}\n    hash: sha256:{hashlib.sha256(tok.encode()).hexdigest()}\n"
            f"    prefix: {tok[:8]}\n    enabled: {'true' if enabled else 'false'}\n"
            + (f"    expires_at: {expires}\n" if expires else "")
            + "    endpoints:\n      \"*\": read_write\n")


class Frontdoor:
    """One frontdoor process on 127.0.0.1 with ephemeral ports; `endpoint`
    is the YAML body of endpoint ep1 (indented 4 spaces), `extra` more
    top-level YAML."""

    def __init__(self, workdir, keys_yaml, endpoint, limits="", threads=2, extra="", log_path=None, more_endpoints=""):
        self.dir, self.port, self.admin = workdir, free_port(), free_port()
        with open(os.path.join(workdir, "keys.yaml"), "w") as f:
            f.write("keys:\n" + keys_yaml)
        self.cfg = os.path.join(workdir, f"fd-{self.port}.yaml")
        with open(self.cfg, "w") as f:
            f.write(f"listeners:\n  - address: 127.0.0.1:{self.port}\nadmin:\n  address: 127.0.0.1:{self.admin}\n"
                    f"threads: {threads}\nlog: {{ level: warn, access: false }}\n"
                    f"routing:\n  path_prefix: true\n"
                    + (f"limits:\n{limits}" if limits else "")
                    + f"keys:\n  store: keys.yaml\n  last_used_flush: 2s\n{extra}"
                    f"endpoints:\n  ep1:\n{endpoint}{more_endpoints}")
        self.log_path = log_path or os.path.join(workdir, f"fd-{self.port}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([frontdoor_bin(), "--config", self.cfg],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        self.pid = self.proc.pid

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"frontdoor exited at start ({self.proc.returncode}); see {self.log_path}:\n"
                                 + open(self.log_path, errors="replace").read()[-2000:])
            if admin_get(self.admin, "/readyz", 1.0)[0] == 200:
                return
            time.sleep(0.05)
        raise SystemExit("frontdoor did not become ready in time")

    def alive(self):
        return self.proc.poll() is None

    def exit_desc(self):
        rc = self.proc.returncode
        if rc is None: return "running"
        if rc < 0:
            try: return f"killed by {signal.Signals(-rc).name}"
            except ValueError: return f"killed by signal {-rc}"
        return f"exited with status {rc}"

    def rss_kb(self):
        try:
            m = re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{self.pid}/status").read())
            return int(m.group(1)) if m else 0
        except OSError:
            return 0

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return 0

    def stderr_tail(self, n=1500):
        try:
            self.log.flush()
            return open(self.log_path, errors="replace").read()[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def admin_get(port, path, timeout=2.0):
    """(status, problem) of GET path on the admin listener, strictly parsed;
    status 0 when it failed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            p = Parser("response")
            p.expect("GET")
            deadline = time.time() + timeout
            while not p.done_msgs and time.time() < deadline:
                data = s.recv(65536)
                if not data:
                    p.eof()
                    break
                p.feed(data)
            final = [m for m in p.done_msgs if not m.interim]
            return (final[0].status, "") if final else (0, "no response")
    except HttpError as e:
        return 0, f"malformed: {e}"
    except OSError as e:
        return 0, f"{type(e).__name__}: {e}"


# --- strict HTTP/1.1 parsing ----------------------------------------------------------------

TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
HEADER_RE = re.compile(rb"(" + TCHAR + rb"+):[ \t]*((?:[\x21-\x7e\x80-\xff](?:[\t \x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?)[ \t]*")
STATUS_RE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9]) ([\t \x21-\x7e\x80-\xff]*)")
REQUEST_RE = re.compile(rb"(" + TCHAR + rb"+) ([\x21-\x7e]+) HTTP/1\.([01])")
CHUNK_RE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[ \t]*" + TCHAR + rb"+(?:[ \t]*=[ \t]*(?:" + TCHAR
                      + rb"+|\"[^\"\r\n]*\"))?)*)[ \t]*")
MAX_HEAD = 64 * 1024
MAX_LINE = 4096


def spot(line, ok=re.compile(rb"[^\x21-\x7e ]")):
    """The first byte of a line that is not visible ASCII or space, with some
    context: what a long rejected line is rejected for."""
    m = ok.search(line)
    if not m or len(line) <= 80:
        return repr(line[:80])
    i = m.start()
    return f"byte {i} of {len(line)}: " + repr(line[max(0, i - 30):i + 30])


class HttpError(Exception):
    """A framing or syntax violation; `kind` is the class used for dedupe."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail
        # A message cut short by the end of the connection: what a proxy must
        # do when its worker dies mid-body, so callers judge it, not the parser.
        self.truncated = kind.startswith("connection closed inside")


class Message:
    __slots__ = ("version", "status", "reason", "method", "target", "headers", "body", "framing",
                 "interim", "close", "complete", "start", "end")

    def header(self, name):
        vals = [v for k, v in self.headers if k == name]
        return vals

    def first(self, name, default=None):
        for k, v in self.headers:
            if k == name: return v
        return default


class Parser:
    """Push parser: feed() bytes, get complete messages in done_msgs; eof() at
    the end. Raises HttpError on the first violation. For responses, expect()
    queues the method of each request sent, so that a HEAD answer is read
    without a body and pipelined answers are matched in order."""

    def __init__(self, kind, max_body=64 << 20):
        self.kind, self.max_body = kind, max_body
        self.buf = bytearray()
        self.pos = 0            # bytes of the stream consumed so far (for error offsets)
        self.state = "head"
        self.cur = None
        self.done_msgs = []
        self.methods = deque()
        self.closed = False     # a message ended the connection: nothing may follow
        self.remaining = 0
        self.at_eof = False
        self.last_method = None
        self.pending = None     # framing held back while "?" (maybe HEAD) is decided

    def expect(self, method):
        """Queues the method of a request sent; "?" when it is not known
        whether the server saw a HEAD (a mutated request line): a body is
        then read only if what follows the head is not the next status line
        nor the end of the connection."""
        self.methods.append(method)

    def feed(self, data):
        if not data:
            return
        if self.closed:
            raise HttpError("bytes after the answer to a HEAD request (a body?), then close" if self._after_head()
                            else "bytes after a message that closes the connection",
                            repr(bytes(data[:80])))
        self.buf += data
        self._run()

    def eof(self):
        self.at_eof = True
        if self.state == "maybe_body" and not self.buf:
            self.cur.framing = "none"
            self._finish()
        elif self.state == "body_close":
            self._finish()
        elif self.state != "head" or self.buf:
            where = {"head": "head", "body_len": "Content-Length body", "chunk_size": "chunk size line",
                     "chunk_data": "chunk data", "chunk_crlf": "chunk data", "trailer": "trailer section"}
            raise HttpError(f"connection closed inside a {where.get(self.state, self.state)}",
                            f"{self.remaining} bytes missing" if self.state == "body_len" else repr(bytes(self.buf[:120])))

    def settle_maybe(self):
        """Nothing followed an answer to a "?" request for a while: it was a
        HEAD answer (a body would have been sent with the head)."""
        if self.state == "maybe_body" and not self.buf:
            self.cur.framing = "none"
            self._finish()

    @property
    def partial(self):
        """The message being read (its body so far), or None."""
        return self.cur

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.pos += n
        return out

    def _line(self):
        i = self.buf.find(b"\r\n")
        if i < 0:
            if len(self.buf) > MAX_LINE:
                raise HttpError(f"line longer than {MAX_LINE} bytes in {self.state}", repr(bytes(self.buf[:80])))
            if b"\n" in self.buf:
                raise HttpError(f"bare LF in {self.state}", repr(bytes(self.buf[:80])))
            return None
        line = self._take(i + 2)[:-2]
        if b"\n" in line or b"\r" in line:
            raise HttpError(f"bare CR or LF in {self.state}", repr(line[:80]))
        return line

    def _run(self):
        while True:
            st = self.state
            if st == "head":
                if not self._head():
                    return
            elif st == "body_len":
                n = min(self.remaining, len(self.buf))
                if n:
                    self.cur.body += self._take(n)
                    self.remaining -= n
                if self.remaining:
                    return
                self._finish()
            elif st == "maybe_body":
                if len(self.buf) < 5:
                    return
                if self.buf.startswith(b"HTTP/"):
                    self.cur.framing = "none"
                    self._finish()
                else:
                    te, cl = self.pending
                    self._body_framing(self.cur, te, cl)
            elif st == "body_close":
                self.cur.body += self._take(len(self.buf))
                if len(self.cur.body) > self.max_body:
                    raise HttpError("close-delimited body over the bench limit")
                return
            elif st == "chunk_size":
                line = self._line()
                if line is None:
                    return
                m = CHUNK_RE.fullmatch(line)
                if not m:
                    raise HttpError("bad chunk size line", repr(line[:80]))
                self.remaining = int(m.group(1), 16)
                if len(self.cur.body) + self.remaining > self.max_body:
                    raise HttpError("chunk over the bench body limit", repr(line[:40]))
                self.state = "chunk_data" if self.remaining else "trailer"
            elif st == "chunk_data":
                n = min(self.remaining, len(self.buf))
                if n:
                    self.cur.body += self._take(n)
                    self.remaining -= n
                if self.remaining:
                    return
                self.state = "chunk_crlf"
            elif st == "chunk_crlf":
                if len(self.buf) < 2:
                    return
                if self.buf[:2] != b"\r\n":
                    raise HttpError("chunk data not followed by CRLF", repr(bytes(self.buf[:40])))
                self._take(2)
                self.state = "chunk_size"
            elif st == "trailer":
                line = self._line()
                if line is None:
                    return
                if line == b"":
                    self._finish()
                elif not HEADER_RE.fullmatch(line):
                    raise HttpError("bad trailer field", repr(line[:80]))

    def _head(self):
        # Leading CRLFs before a request line are allowed (RFC 9112 §2.2), not before a response.
        if self.kind == "request":
            while self.buf[:2] == b"\r\n":
                self._take(2)
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise HttpError("head longer than the bench limit")
            if self.kind == "response" and not b"HTTP/".startswith(bytes(self.buf[:5])):
                raise HttpError("bytes after the answer to a HEAD request (a body?)" if self._after_head()
                                else "bytes that do not start a response",
                                repr(bytes(self.buf[:80])))
            return False
        start = self.pos
        raw = self._take(end + 4)[:-4]
        lines = raw.split(b"\r\n")
        for ln in lines:
            if b"\n" in ln or b"\r" in ln or b"\0" in ln:
                raise HttpError("bare CR, LF or NUL in head", repr(ln[:80]))
        m = Message()
        m.start, m.headers, m.body, m.complete = start, [], bytearray(), False
        m.status = m.reason = m.method = m.target = None
        first = lines[0]
        if self.kind == "response":
            sm = STATUS_RE.fullmatch(first)
            if not sm:
                raise HttpError("bytes after the answer to a HEAD request (a body?)" if self._after_head()
                                else "bad status line",
                                repr(first[:80]))
            m.version, m.status, m.reason = int(sm.group(1)), int(sm.group(2)), sm.group(3)
        else:
            rm = REQUEST_RE.fullmatch(first)
            if not rm:
                raise HttpError("bad request line", spot(first))
            m.method, m.target, m.version = rm.group(1).decode(), rm.group(2).decode("latin-1"), int(rm.group(3))
        for ln in lines[1:]:
            if ln[:1] in (b" ", b"\t"):
                raise HttpError("obs-fold line in head", repr(ln[:80]))
            hm = HEADER_RE.fullmatch(ln)
            if not hm:
                raise HttpError("bad header line", spot(ln))
            m.headers.append((hm.group(1).decode().lower(), hm.group(2).decode("latin-1")))
        conn = ",".join(m.header("connection")).lower()
        toks = {t.strip() for t in conn.split(",")}
        m.close = "close" in toks or (m.version == 0 and "keep-alive" not in toks)
        m.interim = self.kind == "response" and 100 <= m.status < 200
        self.cur = m
        self._framing(m)
        return True

    def _after_head(self):
        return self.last_method == "HEAD"

    def _framing(self, m):
        te, cl = m.header("transfer-encoding"), m.header("content-length")
        if te and cl:
            raise HttpError("both Transfer-Encoding and Content-Length")
        if len(cl) > 1:
            raise HttpError("more than one Content-Length", repr(cl))
        if len(te) > 1:
            raise HttpError("more than one Transfer-Encoding", repr(te))
        if self.kind == "response":
            if m.interim:
                if te or cl:
                    raise HttpError("framing headers on a 1xx")
                if m.status == 101:
                    raise HttpError("101 Switching Protocols (no upgrade is ever accepted here)")
                m.framing = "none"
                return self._finish()
            if not self.methods:
                raise HttpError("more answers than requests sent (desync)", f"status {m.status}")
            m.method = self.methods.popleft()
            if m.method == "HEAD" or m.status in (204, 304):
                if m.status == 204 and (te or (cl and cl[0] != "0")):
                    raise HttpError("framing headers on a 204")
                if cl and not cl[0].isdigit():
                    raise HttpError("bad Content-Length", repr(cl[0]))
                m.framing = "none"
                return self._finish()
            if m.method == "?" and (te or (cl and cl[0] != "0")):
                self.pending, self.state = (te, cl), "maybe_body"
                return
        return self._body_framing(m, te, cl)

    def _body_framing(self, m, te, cl):
        if te:
            if te[0].strip().lower() != "chunked":
                raise HttpError("Transfer-Encoding other than chunked", repr(te[0]))
            m.framing, self.state = "chunked", "chunk_size"
            return
        if cl:
            if not re.fullmatch(r"[0-9]{1,18}", cl[0]):
                raise HttpError("bad Content-Length", repr(cl[0]))
            self.remaining = int(cl[0])
            if self.remaining > self.max_body:
                raise HttpError("Content-Length over the bench limit", cl[0])
            m.framing = "length"
            if self.remaining:
                self.state = "body_len"
                return
            return self._finish()
        if self.kind == "request":
            m.framing = "none"
            return self._finish()
        m.framing, m.close, self.state = "close", True, "body_close"

    def _finish(self):
        m = self.cur
        m.complete, m.end = True, self.pos
        self.done_msgs.append(m)
        self.cur, self.state = None, "head"
        if not m.interim:
            self.last_method = m.method
        if m.close and not m.interim:
            self.closed = True
            if self.buf:
                raise HttpError("bytes after the answer to a HEAD request (a body?), then close" if m.method == "HEAD"
                                else "bytes after a message that closes the connection", repr(bytes(self.buf[:80])))


def ok_status_counts(counter):
    return " ".join(f"{k}:{v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))


def mkdtemp(prefix):
    return tempfile.mkdtemp(prefix=prefix)


class WorkerProc:
    """bench/lib/worker.py as its own process (so that it can be SIGKILLed)."""

    def __init__(self, wid, port=0, record=None, ping_status=200):
        cmd = [sys.executable, os.path.join(HERE, "worker.py"), "--id", wid, "--port", str(port),
               "--ping-status", str(ping_status)]
        if record:
            cmd += ["--record", record]
        self.wid = wid
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = b""
        # Bounded wait for "PORT n": the child prints it once its socket listens.
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.time() + 15
        while not line.endswith(b"\n") and time.time() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.time())):
                b = os.read(self.proc.stdout.fileno(), 64)
                if not b:
                    break
                line += b
        sel.close()
        if not line.startswith(b"PORT "):
            self.kill()
            raise SystemExit(f"worker {wid} did not start (port {port})")
        self.port = int(line.split()[1])

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout:
            self.proc.stdout.close()
