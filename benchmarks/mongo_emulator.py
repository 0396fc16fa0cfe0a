"""``python -m benchmarks.mongo_emulator``: the tests' MongoDB wire-protocol server, in its own process.

It is mockupdb's protocol handling in front of mongomock, so figures measured on it are the cost of
that emulator, not of MongoDB. It runs in a separate process so that its threads do not take the GIL
from the event loop being timed. It prints its URI, then serves until its stdin closes.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def main() -> None:
    sys.path.insert(0, str(TESTS))  # the server is a test helper, not part of the package
    from support.mongo_server import MongoTestServer

    server = MongoTestServer().start()
    try:
        print(server.uri, flush=True)
        sys.stdin.read()  # returns when the parent closes the pipe or exits
    finally:
        server.close()


if __name__ == "__main__":
    main()
