#!/usr/bin/env python3
"""Small peers and checkers for tests/compat/run.sh (plain POSIX sockets, no
NetKernel knowledge: they run natively in the remote namespace or, unmodified,
as guests).

  helpers.py httpd ADDR PORT DIR      GET serves DIR, PUT /up/NAME stores the
                                      body in DIR/up/NAME and answers its sha256
  helpers.py echo-server ADDR PORT    asyncio TCP echo server (serves forever)
  helpers.py echo-client ADDR PORT N  asyncio client: N messages of random
                                      sizes, each echo compared byte by byte;
                                      prints "OK N msgs BYTES bytes SHA256"
  helpers.py relay-check ADDR PORT MB send MB random MiB through an echo path
                                      while reading it back; prints
                                      "OK BYTES bytes sha256 SHA" when equal
  helpers.py udp-echo ADDR PORT       UDP echo: each datagram back to its sender
  helpers.py iperf FILE KIND          summarise an iperf3 -J file (see below)
"""
import asyncio
import hashlib
import http.server
import json
import os
import random
import socket
import sys
import threading


def httpd(addr, port, root):
    os.makedirs(os.path.join(root, "up"), exist_ok=True)

    class H(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=root, **kw)

        def log_message(self, fmt, *args):
            pass

        def do_PUT(self):
            name = os.path.basename(self.path)
            n = int(self.headers.get("Content-Length", "0"))
            h = hashlib.sha256()
            with open(os.path.join(root, "up", name), "wb") as f:
                left = n
                while left > 0:
                    b = self.rfile.read(min(left, 1 << 16))
                    if not b:
                        break
                    f.write(b)
                    h.update(b)
                    left -= len(b)
            body = ("%s %d\n" % (h.hexdigest(), n - left)).encode()
            self.send_response(201 if left == 0 else 400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer((addr, int(port)), H).serve_forever()


async def _echo(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()


def echo_server(addr, port):
    async def main():
        srv = await asyncio.start_server(_echo, addr, int(port), reuse_address=True)
        print("listening", flush=True)
        async with srv:
            await srv.serve_forever()
    asyncio.run(main())


def echo_client(addr, port, n):
    async def main():
        reader, writer = await asyncio.open_connection(addr, int(port))
        rnd = random.Random(7)
        h = hashlib.sha256()
        total = 0
        for i in range(int(n)):
            msg = rnd.randbytes(rnd.randint(1, 200000))
            writer.write(msg)
            await writer.drain()
            got = await reader.readexactly(len(msg))
            if got != msg:
                print("FAIL message %d differs" % i)
                sys.exit(1)
            h.update(got)
            total += len(got)
        writer.close()
        await writer.wait_closed()
        print("OK %s msgs %d bytes %s" % (n, total, h.hexdigest()))
    asyncio.run(main())


def relay_check(addr, port, mb):
    data = random.Random(11).randbytes(int(mb) << 20)
    s = socket.create_connection((addr, int(port)), timeout=30)

    def send():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=send)
    t.start()
    got = bytearray()
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        got += b
    t.join()
    if bytes(got) != data:
        print("FAIL got %d bytes, sent %d (sha %s vs %s)" % (
            len(got), len(data), hashlib.sha256(got).hexdigest()[:16],
            hashlib.sha256(data).hexdigest()[:16]))
        sys.exit(1)
    print("OK %d bytes sha256 %s" % (len(got), hashlib.sha256(got).hexdigest()))


def udp_echo(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    while True:
        b, a = s.recvfrom(65536)
        s.sendto(b, a)


def iperf(path, kind):
    """Print 'OK <summary>' if the iperf3 -J result in path is sane for kind
    (tcp, server, par4, bidir, udp), else 'FAIL <iperf3's own error>' (exit 1)."""
    t = open(path).read()
    i = t.find("{")
    try:
        d = json.loads(t[i:])
    except Exception:
        lines = [l for l in t.strip().splitlines() if l.strip()]
        print("FAIL unparsable iperf3 output: %s" % (" | ".join(lines[-2:]) or "empty"))
        sys.exit(1)
    if d.get("error"):
        print("FAIL iperf3: %s" % d["error"])
        sys.exit(1)
    end = d.get("end", {})
    streams = len(d.get("start", {}).get("connected", []))
    if kind == "udp":
        s = end.get("sum", {})
        # lost_packets comes from the server's report: the datagrams arrived.
        if s.get("bytes", 0) <= 0 or s.get("packets", 0) <= 0 or \
                s.get("lost_percent", 100) > 10:
            print("FAIL UDP: %s" % json.dumps(s)[:200])
            sys.exit(1)
        print("OK %d datagrams, %d bytes, %s lost (server report)" % (
            s["packets"], s["bytes"], s.get("lost_packets")))
        return
    rx = end.get("sum_received", {})
    tx = end.get("sum_sent", {})
    # A server's own JSON (kind "server") counts what it received only.
    if rx.get("bytes", 0) <= 0 or (kind != "server" and tx.get("bytes", 0) <= 0):
        print("FAIL zero bytes (sent %s received %s)" % (tx.get("bytes"), rx.get("bytes")))
        sys.exit(1)
    msg = "%d streams, %.1f Mbit/s, %d bytes received" % (
        streams, rx["bits_per_second"] / 1e6, rx["bytes"])
    if kind == "par4" and streams != 4:
        print("FAIL %d streams connected, want 4" % streams)
        sys.exit(1)
    if kind == "bidir":
        rev = end.get("sum_received_bidir_reverse", {})
        if rev.get("bytes", 0) <= 0:
            print("FAIL bidir reverse direction moved no bytes")
            sys.exit(1)
        msg += ", reverse %.1f Mbit/s" % (rev["bits_per_second"] / 1e6)
    print("OK " + msg)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"httpd": httpd, "echo-server": echo_server, "echo-client": echo_client,
     "relay-check": relay_check, "udp-echo": udp_echo, "iperf": iperf}[cmd](*args)
