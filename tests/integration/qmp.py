#!/usr/bin/env python3
"""Minimal QMP client for the integration tests.

usage: qmp.py SOCKET COMMAND [JSON-ARGUMENTS]
Prints the command's "return" value as JSON; exits 1 with QMP's error
description on an error reply, 2 when the socket cannot be reached.
"""
import json
import socket
import sys
import time


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, cmd = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock.connect(path)
            break
        except OSError as e:
            if time.monotonic() > deadline:
                print(f"qmp: cannot connect to {path}: {e}", file=sys.stderr)
                return 2
            time.sleep(0.1)
    f = sock.makefile("rw")

    def recv():
        while True:
            line = f.readline()
            if not line:
                raise EOFError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    recv()  # greeting
    f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
    f.flush()
    recv()
    req = {"execute": cmd}
    if args is not None:
        req["arguments"] = args
    f.write(json.dumps(req) + "\n")
    f.flush()
    reply = recv()
    if "error" in reply:
        print(f"qmp: {cmd}: {reply['error'].get('desc')}", file=sys.stderr)
        return 1
    print(json.dumps(reply["return"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
