"""Python fowld 26.8 forced onto a transit relay (for relay-only interop tests): its Dilation
offers no direct hints and uses the relay named by $FOWL_TEST_RELAY instead of the public one
fowl hard-codes. Everything else is the unchanged `fowld` entry point."""

import os
import sys

import wormhole.wormhole as ww

_dilate = ww._DeferredWormhole.dilate


def dilate(self, *args, **kwargs):
    kwargs["no_listen"] = True
    kwargs["transit_relay_location"] = os.environ["FOWL_TEST_RELAY"]
    return _dilate(self, *args, **kwargs)


ww._DeferredWormhole.dilate = dilate

from fowl.cli import fowld  # noqa: E402

sys.exit(fowld())
