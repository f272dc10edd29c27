"""A Python magic-wormhole peer for interop tests, driven by command-line options.

It prints one JSON object per line on stdout:
  {"event": "code", "code": ...}            after allocating (without --code)
  {"event": "verifier", "verifier": hex}
  {"event": "versions", "versions": {...}}  the peer's app_versions
  {"event": "message", "text": ...}         each application message received, in order
  {"event": "closed", "result": ...}        after close() succeeded
  {"event": "error", "kind": ..., "text": ...}  when the session failed
"""

import argparse
import json
import sys

from twisted.internet import defer, task

import wormhole


def out(**kw):
    print(json.dumps(kw), flush=True)


async def run(reactor, args):
    w = wormhole.create(args.appid, args.url, reactor,
                        versions={"python-peer": {"n": 1}}, dilation=True)
    try:
        if args.code:
            w.set_code(args.code)
        else:
            w.allocate_code(args.words)
            out(event="code", code=await w.get_code())
        out(event="verifier", verifier=(await w.get_verifier()).hex())
        out(event="versions", versions=await w.get_versions())
        for i in range(args.send):
            w.send_message(f"py-{i}".encode())
        for _ in range(args.expect):
            text = (await w.get_message()).decode()
            out(event="message", text=text)
            if args.echo:
                w.send_message(f"echo:{text}".encode())
        result = await w.close()
        out(event="closed", result=str(result))
    except Exception as e:  # report every failure to the test, then exit non-zero
        out(event="error", kind=type(e).__name__, text=str(e))
        try:
            await w.close()
        except Exception:
            pass
        sys.exit(3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--appid", default="lothar.com/rust-fowl-test")
    p.add_argument("--code")
    p.add_argument("--words", type=int, default=2)
    p.add_argument("--send", type=int, default=0)
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--echo", action="store_true")
    args = p.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
