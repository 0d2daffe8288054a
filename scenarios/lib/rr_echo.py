#!/usr/bin/env python3
"""A small fixed-rate request/response load for fig-mux (plain sockets, so it
runs natively and as a NetKernel guest alike).

  rr_echo.py server [--bind ADDR] PORT
      echoes every byte it reads, any number of connections (selectors).
  rr_echo.py client [--rate R] [--size B] [--secs S] HOST PORT
      one TCP connection; sends a B-byte request every 1/R s on an absolute
      schedule (open loop: it does not wait for earlier answers, up to
      --window outstanding; a late request is sent at once, never skipped),
      reads the B-byte answers, and at the end prints one JSON line:
      {"requests":N,"answers":N,"secs":S,"rate":answers/S,"lat_avg_us":..,
       "lat_p50_us":..,"lat_p99_us":..,"late":N,"held":N}

Sleeps between requests (no busy wait): on the 2-core testbed a spinning
client (sockperf under-load does) would take the CPU the NSMs are measured on.
"""
import argparse
import collections
import json
import selectors
import socket
import sys
import time


def server(a):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(128)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    print(f"listening on {a.bind}:{a.port}", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, b"c")
                continue
            c = key.fileobj
            try:
                d = c.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                d = b""
            if not d:
                sel.unregister(c)
                c.close()
                continue
            c.setblocking(True)
            try:
                c.sendall(d)
            except OSError:
                sel.unregister(c)
                c.close()
                continue
            c.setblocking(False)


def client(a):
    """Open loop: requests leave on their schedule whether or not earlier
    answers are back (up to --window outstanding), so the offered rate does
    not depend on the latency; answers come back in order (one TCP stream),
    so a FIFO of send times gives each request's latency."""
    s = socket.create_connection((a.host, a.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    req = b"r" * a.size
    period = 1.0 / a.rate
    sent_at = collections.deque()
    lats = []
    late = 0
    held = 0
    buf = 0
    out = b""
    t0 = time.monotonic()
    end = t0 + a.secs
    nxt = t0
    n = 0
    while True:
        now = time.monotonic()
        if now >= end and not sent_at:
            break
        if now >= end + 5:
            break  # answers that never came: counted as missing
        if now >= nxt and now < end:
            if len(sent_at) >= a.window:
                held += 1  # too many outstanding: this request waits
            else:
                if now - nxt > period:
                    late += 1
                out += req
                sent_at.append(now)
                n += 1
                nxt += period
        if out:
            try:
                k = s.send(out)
                out = out[k:]
            except (BlockingIOError, InterruptedError):
                pass
        wait = max(0.0, min(nxt, end + 5) - time.monotonic()) if now < end else 0.05
        if out:
            wait = min(wait, 0.001)
        for _ in sel.select(wait):
            try:
                d = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            if not d:
                raise SystemExit("rr_echo: the server closed the connection")
            buf += len(d)
            t = time.monotonic()
            while buf >= a.size and sent_at:
                buf -= a.size
                lats.append(t - sent_at.popleft())
    secs = min(time.monotonic(), end) - t0
    s.close()
    lats.sort()

    def pct(p):
        return round(lats[min(len(lats) - 1, int(p * len(lats)))] * 1e6, 1) if lats else None

    print(json.dumps({"requests": n, "answers": len(lats), "secs": round(secs, 3),
                      "rate": round(len(lats) / a.secs, 1),
                      "lat_avg_us": round(sum(lats) / len(lats) * 1e6, 1) if lats else None,
                      "lat_p50_us": pct(0.5), "lat_p99_us": pct(0.99), "late": late,
                      "held": held}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("port", type=int)
    c = sub.add_parser("client")
    c.add_argument("--rate", type=float, default=500)
    c.add_argument("--size", type=int, default=64)
    c.add_argument("--secs", type=float, default=10)
    c.add_argument("--window", type=int, default=64)
    c.add_argument("host")
    c.add_argument("port", type=int)
    a = ap.parse_args()
    if a.mode == "server":
        server(a)
    else:
        if a.rate <= 0 or a.size <= 0 or a.secs <= 0:
            ap.error("rate, size and secs must be > 0")
        client(a)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
