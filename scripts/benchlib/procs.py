"""The processes under test and what /proc says about them.

The fake provider and the router each run as their own process, in their own session
(so one `killpg` ends a process and anything it spawned; a WORKERS > 1 router's workers
are in process groups of their own, stopped by their supervisor, or by themselves when
it is gone). `Children` owns them all and
stops them in `close()`, which `bench.py` calls from a `finally`: Ctrl-C or a crash
leaves nothing behind. CPU and memory are read from /proc directly (no psutil).
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "adm_bench_" + "k" * 24
UPSTREAM_KEY = "sk-bench"
ACCOUNT = "bench"
_LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- /proc ---------------------------------------------------------------------------

def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (with WORKERS > 1, the supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree (all threads), in seconds; 1/CLK_TCK resolution."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / _CLK_TCK


def rss_kib(pid: int) -> int:
    """VmRSS of the process tree, KiB."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def preemptions(pid: int) -> int:
    """Involuntary context switches of the process tree (all threads): how often the
    scheduler took a core from it while it still had work (more busy processes than
    cores)."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def machine_busy_seconds() -> float:
    """CPU-seconds every core of the machine spent not idle (/proc/stat), all processes:
    on a shared machine, what else ran shows as busy minus the processes we measure."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _CLK_TCK  # user..steal; guest is inside user


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=5).stdout
        commit = (commit or "?") + (" (uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) // 1024} MiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version() + f" ({platform.python_implementation()})",
        "commit": commit,
    }


def raise_open_files(wanted: int) -> int:
    """Raise this process's open-file limit to `wanted` (the hard limit too, where we may:
    root), so that the children, which inherit it, hold that many sockets: N streams
    cost the router 2 N descriptors (client and upstream). Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):  # not privileged: up to the hard limit only
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


# --- child processes -----------------------------------------------------------------

def _cli_module(python: str) -> str:
    """The command-line module of the checkout whose `.venv/bin/python` this is (it moved
    from router.cli to actors.cli; `--ab` may compare against a checkout from before)."""
    checkout = ROOT if python == sys.executable else Path(python).absolute().parents[2]
    return "router.cli" if (checkout / "router" / "cli.py").is_file() else "actors.cli"


class Child:
    """One child in its own session; its output is drained by a thread (kept: the tail)."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.tail: deque[str] = deque(maxlen=200)
        self.host, self.port = "", 0
        self._found = threading.Event()
        self.proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        threading.Thread(target=self._pump, name=f"pump-{name}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line)
            if not self._found.is_set():
                match = _LISTENING.search(line)
                if match:
                    self.host, self.port = match.group(1), int(match.group(2))
                    self._found.set()
        self._found.set()  # EOF: wake the waiter, it checks the port

    def wait_listening(self, timeout_s: float = 30.0) -> None:
        self._found.wait(timeout_s)
        if not self.port:
            raise RuntimeError(f"{self.name} did not start listening:\n" + "".join(self.tail))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                               + "".join(self.tail))

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:  # the group may outlive its leader
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Children:
    """Every child process and temp dir of the bench; `close()` ends them all."""

    children: list[Child] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "ANTHROPIC_", "AURA_"))}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _listening(self, name: str, argv: list[str]) -> Child:
        """A child started from the checkout, once it says it is listening."""
        child = Child(name, argv, cwd=ROOT, env=self._env())
        self.children.append(child)
        child.wait_listening()
        return child

    def start_fake(self, *, reply_words: int = 12, chunk_delay_s: float = 0.0,
                   first_chunk_now: bool = False) -> Child:
        argv = [sys.executable, "-m", "tests.fakes", "--host", "127.0.0.1", "--port", "0",
                "--reply-words", str(reply_words), "--chunk-delay", str(chunk_delay_s),
                "--expected-api-key", UPSTREAM_KEY]
        if first_chunk_now:
            argv.append("--first-chunk-now")
        return self._listening("fake", argv)

    def start_paced_fake(self, *, reply_words: int, first_byte_delay_s: float,
                         chunk_delay_s: float, processes: int = 1) -> Child:
        """benchlib/paced_fake.py: the lean paced fake of `--paced-load` (OpenAI chat and
        Anthropic messages streams only)."""
        argv = [sys.executable, str(ROOT / "scripts" / "benchlib" / "paced_fake.py"),
                "--host", "127.0.0.1", "--port", "0", "--reply-words", str(reply_words),
                "--first-byte-delay", str(first_byte_delay_s),
                "--chunk-delay", str(chunk_delay_s), "--processes", str(processes)]
        return self._listening("paced-fake", argv)

    def start_floor(self, *, reply_words: int, chunk_delay_s: float, patched: bool,
                    upstream: Child | None = None) -> Child:
        """benchlib/floor_app.py: hypercorn answering pre-encoded bytes (`--floor`), or
        with `upstream`, passing each request through to it (the floor of a gateway)."""
        argv = [sys.executable, str(ROOT / "scripts" / "benchlib" / "floor_app.py"),
                "--reply-words", str(reply_words), "--chunk-delay", str(chunk_delay_s)]
        if patched:
            argv.append("--patched")
        if upstream is not None:
            argv += ["--upstream", upstream.base_url + "/v1", "--upstream-key", UPSTREAM_KEY]
        return self._listening("floor", argv)

    def start_router(self, fake: Child, python: str = sys.executable,
                     wrapper: tuple[str, ...] = (), start_timeout_s: float = 30.0,
                     workers: int = 1, env: dict[str, str] | None = None,
                     max_concurrent: int = 2048, extra_config: str = "") -> tuple[Child, str]:
        """A router in a fresh DATA_DIR routing `bench-model` to `fake`; (child, user key).
        `python`: another checkout's interpreter, to run that checkout's router;
        `wrapper`: a command line to run it under (valgrind, for instruction counts);
        `workers`: WORKERS (above 1 the child is the supervisor, the workers its children:
        `cpu_seconds` and `rss_kib` of the child count them all); `env`: more settings
        (BILLING_BACKEND and its URL); `max_concurrent`: the provider's cap on requests in
        flight (the memory runs hold more streams than the default); `extra_config`: TOML
        appended to the config (more providers and models; `{fake_url}` in it becomes the
        fake's base URL)."""
        tmp = Path(tempfile.mkdtemp(prefix="aura-bench-"))
        self.dirs.append(tmp)
        config = tmp / "aura-router.toml"
        config.write_text(f"""
[[providers]]
name = "fake"
kind = "openai"
base_url = "{fake.base_url}/v1"
api_keys = ["{UPSTREAM_KEY}"]
max_concurrent = {max_concurrent}

[[models]]
id = "bench-model"
route = ["fake:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"
""" + extra_config.replace("{fake_url}", fake.base_url))
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "DATA_DIR": str(tmp),
               "ADMIN_API_KEY": ADMIN_KEY, "LOG_REQUESTS": "false", "AURA_CONFIG": str(config),
               "RATE_LIMIT_RPM": "0",  # the load generator is one account
               "PYTHONUNBUFFERED": "1", "WORKERS": str(workers), **(env or {})}
        argv = [*wrapper, python, "-m", _cli_module(python), "serve", "--host", "127.0.0.1",
                "--port", "0"]
        child = Child("router", argv, cwd=tmp, env=env)
        self.children.append(child)
        child.wait_listening(start_timeout_s)
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=child.base_url, headers=admin, timeout=start_timeout_s,
                          trust_env=False) as client:
            r = client.post("/admin/keys", json={"account": ACCOUNT, "label": "bench"})
            if r.status_code not in (200, 201):
                raise RuntimeError(f"POST /admin/keys: {r.status_code} {r.text}")
            key = r.json()["key"]
            r = client.post(f"/admin/accounts/{ACCOUNT}/credits",
                            json={"amount_micros": 1_000_000_000_000, "reason": "bench"})
            if r.status_code != 200:
                raise RuntimeError(f"POST credits: {r.status_code} {r.text}")
        return child, key

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.children:
            self.children.remove(child)

    def close(self) -> None:
        while self.children:
            self.children.pop().stop()
        while self.dirs:
            shutil.rmtree(self.dirs.pop(), ignore_errors=True)


