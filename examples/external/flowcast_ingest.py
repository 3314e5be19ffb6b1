#!/usr/bin/env python3
"""Write log lines and progress to a flowcast run from Python, with no package to install.

Speaks just enough of the Redis protocol (RESP) over a socket to append entries to the
ingest stream that flowcast servers and workers consume (docs/redis.md, "External
producers"). Browsers watching the run see StepLogEvent and StepProgressEvent events.

    from flowcast_ingest import FlowcastIngest
    out = FlowcastIngest(run_id, step="train", url="redis://127.0.0.1:6379")
    out.log("epoch 1: loss 0.31")
    out.progress(0.25, "epoch 1 of 4")

Command line:  python3 flowcast_ingest.py RUN_ID STEP [--url redis://...] [--prefix flowcast:]
               reads lines from standard input and sends each as a log line.
"""
import argparse
import socket
import sys
from urllib.parse import urlparse


class FlowcastIngest:
    def __init__(self, run_id, step, url="redis://127.0.0.1:6379", prefix="flowcast:", maxlen=100000):
        u = urlparse(url)
        self.stream = prefix + "ingest"
        self.run_id, self.step, self.maxlen = run_id, step, maxlen
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379))
        self.reader = self.sock.makefile("rb")
        if u.password:
            self._call("AUTH", *([u.username, u.password] if u.username else [u.password]))
        if u.path.strip("/"):
            self._call("SELECT", u.path.strip("/"))

    def _call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            data = str(a).encode("utf-8")
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        line = self.reader.readline()
        if line.startswith(b"-"):
            raise RuntimeError(line[1:].decode().strip())
        if line.startswith(b"$"):  # bulk reply (XADD answers the entry id)
            n = int(line[1:])
            return None if n < 0 else self.reader.read(n + 2)[:-2].decode()
        return line[1:].decode().strip()

    def _xadd(self, *fields):
        return self._call("XADD", self.stream, "MAXLEN", "~", self.maxlen, "*", "run_id", self.run_id, "step", self.step, *fields)

    def log(self, message):
        """Appends one or more lines (split on newlines) to the step's log."""
        return self._xadd("type", "log", "message", message)

    def progress(self, fraction, message=None):
        """Reports the step's progress, a number from 0 to 1."""
        fields = ["type", "progress", "progress", repr(float(fraction))]
        if message is not None:
            fields += ["message", message]
        return self._xadd(*fields)

    def close(self):
        self.sock.close()


def main():
    p = argparse.ArgumentParser(description="Send standard input to a flowcast run as log lines.")
    p.add_argument("run_id")
    p.add_argument("step")
    p.add_argument("--url", default="redis://127.0.0.1:6379")
    p.add_argument("--prefix", default="flowcast:")
    a = p.parse_args()
    out = FlowcastIngest(a.run_id, a.step, url=a.url, prefix=a.prefix)
    for line in sys.stdin:
        out.log(line.rstrip("\n"))
    out.close()


if __name__ == "__main__":
    main()
