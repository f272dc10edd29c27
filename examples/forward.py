#!/usr/bin/env python3
"""A glue program for fowld (Python standard library only).

It spawns two fowld processes, as two machines would: the "server" side offers a local TCP
service (say SSH on port 22) with `remote`, the "client" side lets the peer make it listen with
`local`, and the service becomes reachable on the client side's port.

    python3 examples/forward.py --fowld target/release/fowld --mailbox ws://127.0.0.1:4000/v1 \\
        --service-port 22 --listen-port 2222          # then: ssh -p 2222 localhost

With --selftest it serves a small echo service itself, sends data through the forward, checks
the echo and closes both daemons (exit status 0 on success). On two real machines, run the two
halves separately: one side sends `allocate-code` + `remote`, the other `set-code` + `local`.
"""

import argparse
import json
import socket
import subprocess
import sys
import threading


class Fowld:
    """One fowld process; its JSON output lines are read by a thread into a queue."""

    def __init__(self, fowld, mailbox, name):
        self.name = name
        self.proc = subprocess.Popen(
            [fowld, "--mailbox", mailbox, "--no-relay"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # Python's fowld prints some non-JSON lines
            with self.cond:
                self.lines.append(msg)
                self.cond.notify_all()
        with self.cond:
            self.lines.append({"kind": "exited"})
            self.cond.notify_all()

    def send(self, **command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def expect(self, kind, timeout=60):
        """Waits for the first line of `kind`; an `error` or an exit fails."""
        with self.cond:
            while True:
                for i, msg in enumerate(self.lines):
                    if msg["kind"] == kind:
                        return self.lines.pop(i)
                    if msg["kind"] in ("error", "exited"):
                        raise RuntimeError(f"{self.name}: {msg}")
                if not self.cond.wait(timeout):
                    raise RuntimeError(f"{self.name}: no {kind} within {timeout} s")


def echo_service():
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(65536), b"")], daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fowld", default="fowld")
    p.add_argument("--mailbox", default="default")
    p.add_argument("--service-port", type=int, help="the local service to offer (e.g. 22)")
    p.add_argument("--listen-port", type=int, help="where the other side listens (default: any)")
    p.add_argument("--selftest", action="store_true")
    args = p.parse_args()
    port = echo_service() if args.selftest else args.service_port
    if port is None:
        p.error("--service-port or --selftest")

    server = Fowld(args.fowld, args.mailbox, "server side")
    client = Fowld(args.fowld, args.mailbox, "client side")
    client.send(kind="local", name="ssh", local_listen_port=args.listen_port)
    server.send(kind="allocate-code")
    code = server.expect("code-allocated")["code"]
    print(f"code: {code}")
    client.send(kind="set-code", code=code)
    verifier = server.expect("peer-connected")["verifier"]
    assert client.expect("peer-connected")["verifier"] == verifier
    print(f"verifier: {verifier}")
    server.send(kind="remote", name="ssh", local_connect_port=port)
    server.expect("awaiting-connect")
    listening = client.expect("listening")["listening_port"]
    print(f"the service on port {port} is now reachable at 127.0.0.1:{listening}")

    if args.selftest:
        data = bytes(range(256)) * 4096
        with socket.create_connection(("127.0.0.1", listening)) as s:
            threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
            got = b""
            while len(got) < len(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        assert got == data, f"echo differs ({len(got)} of {len(data)} bytes)"
        print(f"selftest: {len(data)} bytes went through and came back")
    else:
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            pass
    server.send(kind="session-close")
    for side in (server, client):
        print(f"{side.name}: {side.expect('closed')['result']}")
        side.proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
