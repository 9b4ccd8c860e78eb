"""Instructions the router executes per request and per streamed chunk, under callgrind.

CPU seconds on this machine drift by ±20 % within minutes, so two routers measured one
after the other can differ by more than the change under test. Instruction counts do
not drift: the router runs under `valgrind --tool=callgrind` (about 50× slower, which
does not matter for a count), requests are sent one at a time on one keep-alive
connection, and `callgrind_control` zeroes the counters after a warm-up and dumps them
after the measured requests; the dump's total divided by the requests is the figure.
Repeated runs agree within ~1 %. Instructions are not time (cache misses and syscalls
weigh differently), but for the same interpreter and the same work a change in
instructions is a change in CPU.

Figures: a non-streaming request, a streaming request whose whole reply arrives in one
write, and a paced chunk (streams of one token per SSE event, 20 ms apart, at 10 and
110 words: the difference per extra chunk, as in `--paced`). Needs valgrind
(`apt-get install valgrind`).
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchlib.procs import Children

WARMUP_REQUESTS = 30
MEASURED_REQUESTS = 100
PACED_REQUESTS = 20
PACED_WORDS = (10, 110)
PACED_DELAY_S = 0.02
START_TIMEOUT_S = 600.0  # the router's start-up under valgrind takes tens of seconds


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def _total(path: Path) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], capture_output=True, timeout=60, check=False)


def _dump(out: Path, label: str) -> Path:
    """Dump (and zero) the counters; the path of the new dump file."""
    before = set(glob.glob(str(out / "*")))
    _control("-d", label)
    for _ in range(600):
        new = set(glob.glob(str(out / "*"))) - before
        if new:
            time.sleep(0.5)  # let valgrind finish writing it
            return Path(max(new, key=lambda p: Path(p).stat().st_mtime))
        time.sleep(0.1)
    raise RuntimeError("callgrind did not dump")


def per_request(children: Children, python: str, *, stream: bool, words: int = 12,
                delay_s: float = 0.0, requests: int = MEASURED_REQUESTS) -> float:
    """Instructions per request of the router that `python` runs."""
    out = Path(tempfile.mkdtemp(prefix="aura-callgrind-"))
    children.dirs.append(out)
    fake = children.start_fake(reply_words=words, chunk_delay_s=delay_s)
    wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p")
    router, key = children.start_router(fake, python, wrapper, START_TIMEOUT_S)
    body: dict[str, object] = {"model": "bench-model", "max_tokens": 256,
                               "messages": [{"role": "user", "content": "hello there"}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    try:
        with httpx.Client(base_url=router.base_url, timeout=120, trust_env=False,
                          headers={"authorization": f"Bearer {key}"}) as client:
            def send(n: int) -> None:
                for _ in range(n):
                    answer = client.post("/v1/chat/completions", json=body)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")

            send(WARMUP_REQUESTS)
            _dump(out, "warm-up")
            send(requests)
            time.sleep(0.5)  # settlement ends before the response does; be generous
            return _total(_dump(out, "measured")) / requests
    finally:
        children.stop(router)
        children.stop(fake)


def measure(children: Children, python: str = sys.executable) -> dict[str, float]:
    nonstream = per_request(children, python, stream=False)
    burst = per_request(children, python, stream=True)
    low, high = (per_request(children, python, stream=True, words=w, delay_s=PACED_DELAY_S,
                             requests=PACED_REQUESTS) for w in PACED_WORDS)
    return {"nonstream_instr": nonstream, "stream_instr": burst,
            "per_chunk_instr": (high - low) / (PACED_WORDS[1] - PACED_WORDS[0])}

