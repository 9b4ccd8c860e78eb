"""Run the fake providers in the foreground: ``python -m tests.fakes --port 9100``.

Prints ``listening on http://HOST:PORT`` (flushed) once the socket is listening;
stops on SIGINT / SIGTERM.  Content and fault switches can be preset from the CLI.
"""

from __future__ import annotations

import argparse

from .server import run_foreground
from .state import FakeState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--reply-words", type=int, default=12)
    parser.add_argument("--first-byte-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--chunk-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--first-chunk-now", action="store_true",
                        help="OpenAI chat: the first content chunk without the delay")
    parser.add_argument("--expected-api-key", default=None)
    parser.add_argument("--keep-requests", action="store_true",
                        help="record received requests (off by default: memory grows)")
    args = parser.parse_args(argv)
    state = FakeState(
        reply_words=args.reply_words,
        first_byte_delay_s=args.first_byte_delay,
        chunk_delay_s=args.chunk_delay,
        first_chunk_now=args.first_chunk_now,
        expected_api_key=args.expected_api_key,
        keep_requests=args.keep_requests,
    )
    run_foreground(args.host, args.port, state)


if __name__ == "__main__":
    main()
