#!/usr/bin/env python3
"""A real SMTP server for the integration tests (aiosmtpd).

Listens on 127.0.0.1:PORT and saves every message it accepts as DIR/<time>-<n>.eml,
with the envelope recipients prepended as `X-Test-Rcpt-To:` headers. Recipients whose
local part starts with `bounce` are refused with a permanent 550. `--delay-ms` makes
each DATA command slow, to catch a sender in the middle of a run. Prints `ready` once
it accepts connections, and runs until killed or its standard input closes.
"""

import argparse
import asyncio
import itertools
import os
import sys
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, directory, delay):
        self.directory = directory
        self.delay = delay
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].lower().startswith("bounce"):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        name = "%020d-%06d.eml" % (time.time_ns(), next(self.counter))
        path = os.path.join(self.directory, name)
        headers = "".join("X-Test-Rcpt-To: %s\r\n" % r for r in envelope.rcpt_tos)
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        with open(path + ".tmp", "wb") as out:
            out.write(headers.encode("ascii") + data)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(
        Handler(args.dir, args.delay_ms / 1000.0), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
