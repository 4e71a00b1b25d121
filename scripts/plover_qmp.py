"""A small QMP client for plover's tools and tests."""
import json
import socket
import time


class Qmp:
    """One QMP connection, capabilities negotiated; events are skipped."""

    def __init__(self, path, deadline=None, timeout=30):
        """Connects to the socket at path, retrying until deadline
        (time.monotonic()) if one is given."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                if deadline is None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.f = self.sock.makefile("rw")
        self.recv()                                     # greeting
        self.call("qmp_capabilities")

    def recv(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def call(self, cmd, args=None):
        req = {"execute": cmd}
        if args:
            req["arguments"] = args
        self.f.write(json.dumps(req) + "\n")
        self.f.flush()
        msg = self.recv()
        if "error" in msg:
            raise RuntimeError(f"{cmd}: {msg['error']['desc']}")
        return msg["return"]
