"""A Python magic-wormhole 0.24 Dilation peer for interop tests.

It allocates a code (or uses --code), dilates, and then:
  * listens for subprotocol "echo": every byte received is written back; when the subchannel
    closes it prints {"event": "echo-done", "bytes": N, "sha256": hex}
  * with --source-bytes N: opens subprotocol "py-source", sends N pseudo-random bytes in 64 KiB
    writes, reads the echo of them back, closes, and prints
    {"event": "source-done", "sent": N, "sent_sha256": hex, "echo_bytes": M, "echo_sha256": hex}
Other lines: {"event": "code"}, {"event": "verifier"}, {"event": "dilated"}, {"event": "closed"},
{"event": "error"}. A line "close" on stdin closes the wormhole.
"""

import argparse
import hashlib
import json
import random
import sys

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.stdio import StandardIO
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

import wormhole

CHUNK = 65536


def out(**kw):
    print(json.dumps(kw), flush=True)


class Echo(Protocol):
    def connectionMade(self):
        self.count = 0
        self.hash = hashlib.sha256()

    def dataReceived(self, data):
        self.count += len(data)
        self.hash.update(data)
        self.transport.write(data)

    def connectionLost(self, reason=None):
        out(event="echo-done", bytes=self.count, sha256=self.hash.hexdigest())


@implementer(IPushProducer)
class Source(Protocol):
    def __init__(self, total, done):
        self.total = total
        self.done = done
        self.rng = random.Random(1234)
        self.sent = 0
        self.sent_hash = hashlib.sha256()
        self.echo = 0
        self.echo_hash = hashlib.sha256()
        self.paused = False
        self.finished_writing = False

    def connectionMade(self):
        self.transport.registerProducer(self, True)
        reactor.callLater(0, self.write_more)

    def write_more(self):
        budget = 16
        while not self.paused and self.sent < self.total and budget > 0:
            chunk = self.rng.randbytes(min(CHUNK, self.total - self.sent))
            self.sent_hash.update(chunk)
            self.sent += len(chunk)
            self.transport.write(chunk)
            budget -= 1
        if self.sent < self.total:
            if not self.paused:
                reactor.callLater(0, self.write_more)
        elif not self.finished_writing:
            self.finished_writing = True
            self.transport.unregisterProducer()
            self.maybe_close()

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        if self.paused:
            self.paused = False
            reactor.callLater(0, self.write_more)

    def stopProducing(self):
        self.paused = True

    def dataReceived(self, data):
        self.echo += len(data)
        self.echo_hash.update(data)
        self.maybe_close()

    def maybe_close(self):
        if self.finished_writing and self.echo >= self.total:
            self.transport.loseConnection()

    def connectionLost(self, reason=None):
        out(event="source-done", sent=self.sent, sent_sha256=self.sent_hash.hexdigest(),
            echo_bytes=self.echo, echo_sha256=self.echo_hash.hexdigest())
        if not self.done.called:
            self.done.callback(None)


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, on_close):
        self.on_close = on_close

    def lineReceived(self, line):
        if line.strip() == b"close":
            self.on_close()


async def run(reactor, args):
    w = wormhole.create(args.appid, args.url, reactor, versions={}, dilation=True)
    closing = defer.Deferred()
    StandardIO(Commands(lambda: closing.called or closing.callback(None)))
    try:
        if args.code:
            w.set_code(args.code)
        else:
            w.allocate_code(2)
            out(event="code", code=await w.get_code())
        out(event="verifier", verifier=(await w.get_verifier()).hex())
        kwargs = {"no_listen": args.no_listen}
        if args.relay:
            kwargs["transit_relay_location"] = args.relay
        if args.ping_interval:
            kwargs["ping_interval"] = args.ping_interval
        dw = w.dilate(**kwargs)
        await dw.listener_for("echo").listen(Factory.forProtocol(Echo))
        if args.source_bytes:
            done = defer.Deferred()
            await dw.connector_for(args.source_name).connect(Factory.forProtocol(lambda: Source(args.source_bytes, done)))
        await dw.when_dilated()
        out(event="dilated")
        await closing
        result = await w.close()
        out(event="closed", result=str(result))
    except Exception as e:
        out(event="error", kind=type(e).__name__, text=str(e))
        sys.exit(3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--appid", default="lothar.com/rust-fowl-test")
    p.add_argument("--code")
    p.add_argument("--relay")
    p.add_argument("--no-listen", action="store_true")
    p.add_argument("--ping-interval", type=float)
    p.add_argument("--source-bytes", type=int, default=0)
    p.add_argument("--source-name", default="py-source")
    args = p.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
