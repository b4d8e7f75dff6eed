"""Benchmark: N concurrent real-time calls through the worker into a Deepgram-protocol server,
against the official deepgram-sdk live client doing the same calls directly.

    python -m bench.deepgram --calls 500 --seconds 30

Three runs, each process on its own, CPU and memory read from /proc every 0.5 s:

1. worker: the driver (`bench.drive --mode worker`) plays N calls of stamped 8 kHz linear16
   audio in 20 ms frames into `asr-worker serve` (ASR_PROVIDER=deepgram), which forwards
   them to the sink (`bench.dg_sink`: dg-server over the mock engine) in another process;
2. sdk: the same calls from `deepgram-sdk`'s live client straight to a fresh sink, one client
   per call, in the driver process;
3. pace: the driver's pacing and stamping alone, no sockets, to take out of the SDK's figure.

Printed: CPU seconds per call-second and p50/p99/max forward latency over the steady state
(all calls in; the first 2 s and the last 0.5 s, when calls ramp up and all end at once, left
out; the whole run's p99 and max are printed too). Forward latency is a frame's send at the
driver to its arrival at the sink, both on the machine's one monotonic clock. Also: the largest
gap between a connection's audio messages at the sink, memory per call (RSS growth / N), the
other processes' load during the window, and the worker's CPU as a ratio to the bare SDK's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common import ProcSample, machine_busy_s, proc_sample

WARMUP_S = 2.0  # after the first frame: connections settle, first results flow
COOLDOWN_S = 0.5  # before the last frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sampler:
    """Samples the CPU time and RSS of some processes every `every_s`, in a thread."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s = every_s
        self.samples: dict[str, list[ProcSample]] = {}
        self._pids: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self._pids[name] = pid
        self.samples.setdefault(name, [])
        self._sample(name, pid)

    def _sample(self, name: str, pid: int) -> None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            self.samples[name].append(proc_sample(pid, time.monotonic()))

    def _run(self) -> None:
        self.samples["machine"] = []
        while not self._stop.wait(self.every_s):
            self.samples["machine"].append(ProcSample(time.monotonic(), machine_busy_s(), 0))
            for name, pid in list(self._pids.items()):
                self._sample(name, pid)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_cores(self, name: str, t0: float, t1: float, *, user_only: bool = False) -> float:
        """Average cores used between t0 and t1 (the samples nearest inside the window)."""
        inside = [s for s in self.samples[name] if t0 <= s.at <= t1]
        if len(inside) < 2:
            return float("nan")
        first, last = inside[0], inside[-1]
        used = last.user_s - first.user_s if user_only else last.cpu_s - first.cpu_s
        return used / (last.at - first.at)

    def rss_before(self, name: str, t: float) -> int:
        before = [s.rss_bytes for s in self.samples[name] if s.at <= t]
        return before[-1] if before else 0

    def rss_peak(self, name: str, t0: float, t1: float) -> int:
        return max((s.rss_bytes for s in self.samples[name] if t0 <= s.at <= t1), default=0)


@dataclass
class Run:
    name: str
    calls: int
    cores: float = float("nan")  # of the process under test
    user_cores: float = float("nan")  # ...of which in user space (the rest: the kernel, for its sockets)
    driver_cores: float = float("nan")
    sink_cores: float = float("nan")
    other_cores: float = float("nan")  # every other process on the machine: other work's load
    rss_per_call: float = float("nan")
    latencies_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # frames sent in the window
    all_latencies_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # every frame
    max_gap_ms: float = float("nan")
    missing_frames: int = 0
    results: int = 0
    ended: int = 0


def deepgram_worker_env(port: int, deepgram_url: str, calls: int, extra: dict[str, str]) -> dict[str, str]:
    """`asr-worker serve` as the benchmarks run it: the Deepgram provider pointed at the sink,
    room for every call, quiet logs; `extra` (--worker-env) on top."""
    return {
        "PORT": str(port),
        "ASR_PROVIDER": "deepgram",
        "DEEPGRAM_URL": deepgram_url,
        "DEEPGRAM_API_KEY": "bench-key",
        "ASR_MAX_SESSIONS": str(calls + 10),
        "ASR_LOG_LEVEL": "warning",
        **extra,
    }


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None, wait_line: str | None = None
) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE if wait_line else subprocess.DEVNULL,
        stderr=None,
        text=True,
    )
    try:
        if wait_line and proc.stdout is not None:
            for line in proc.stdout:
                if wait_line in line:
                    break
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def pin(pid: int, cpu: int | None) -> None:
    """Keep a process on one CPU (when the machine has two or more and --pin is on)."""
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


def start_sink(
    stack: contextlib.ExitStack, sampler: Sampler, out: Path, cpu: int | None, digits: bool = False
) -> str:
    """The Deepgram-protocol sink (`bench.dg_sink`) in a process of its own, watched and pinned
    to `cpu`, stopped with `stack` (when it writes its arrivals to `out`): its ws:// URL. With
    `digits`, every word it answers is a digit word."""
    port = free_port()
    args = [sys.executable, "-m", "bench.dg_sink", "--port", str(port), "--out", str(out)]
    sink = stack.enter_context(process([*args, *(["--digits"] if digits else [])], wait_line="ready"))
    pin(sink.pid, cpu)
    sampler.watch("sink", sink.pid)
    return f"ws://127.0.0.1:{port}"


def start_driver(
    mode: str, url: str, calls: int, seconds: float, out: Path, *extra: str
) -> subprocess.Popen[str]:
    """The callers (`bench.drive`) in a process of their own, saving what they did to `out`."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.drive", "--mode", mode, "--url", url),
            *("--calls", str(calls), "--seconds", str(seconds), "--out", str(out), *extra),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def finish_driver(driver: subprocess.Popen[str], seconds: float, label: str) -> None:
    """Wait for the callers to finish their calls; a failed run stops the benchmark."""
    out, _ = driver.communicate(timeout=seconds + 120)
    if driver.returncode != 0:
        raise SystemExit(f"the {label} driver failed:\n{out}")


def run_phase(
    mode: str,
    calls: int,
    seconds: float,
    tmp: Path,
    worker_env: dict[str, str],
    pinned: bool,
    rate: int = 8000,
    driver_extra: tuple[str, ...] = (),
    label: str = "",
    sink_digits: bool = False,
) -> Run:
    """One measured run. With `pinned`, the process under test (the worker, or the SDK's
    driver) has CPU 0 and the harness (sink, worker-mode driver) CPU 1: "N calls on one core",
    without the harness taking turns on it. Other work on the machine is not pinned. `label`
    names the run's files (a second worker phase, `--compare-env`'s)."""
    py = sys.executable
    under_test_cpu, harness_cpu = (0, 1) if pinned else (None, None)
    run = Run(mode, calls)
    drive_out, sink_out = tmp / f"{label or mode}-drive.npz", tmp / f"{label or mode}-sink.npz"
    with contextlib.ExitStack() as stack, Sampler() as sampler:
        url = ""
        if mode != "pace":
            url = start_sink(stack, sampler, sink_out, harness_cpu, sink_digits)
        if mode in ("worker", "realtime"):
            port = free_port()
            worker = stack.enter_context(
                process(
                    [py, "-m", "asr_worker", "serve"],
                    env=deepgram_worker_env(port, f"{url}/v1/listen", calls, worker_env),
                )
            )
            pin(worker.pid, under_test_cpu)
            wait_http(f"http://127.0.0.1:{port}/health")
            sampler.watch("worker", worker.pid)
            url = f"ws://127.0.0.1:{port}"
        driver_started = time.monotonic()
        extra = driver_extra if mode == "worker" else ()
        driver = start_driver(mode, url, calls, seconds, drive_out, "--rate", str(rate), *extra)
        pin(driver.pid, harness_cpu if mode in ("worker", "realtime") else under_test_cpu)
        sampler.watch("driver", driver.pid)
        finish_driver(driver, seconds, mode)
        stack.close()  # stop the worker, then the sink (which writes its arrivals)
    drive = np.load(drive_out)
    t_start, t_end = (float(x) for x in drive["window"])
    t0, t1 = t_start + min(WARMUP_S, (t_end - t_start) / 3), t_end - COOLDOWN_S
    run.results, run.ended = (int(x) for x in drive["counts"])
    run.driver_cores = sampler.cpu_cores("driver", t0, t1)
    under_test = {"worker": "worker", "realtime": "worker", "sdk": "driver", "pace": "driver"}[mode]
    run.cores = sampler.cpu_cores(under_test, t0, t1)
    run.user_cores = sampler.cpu_cores(under_test, t0, t1, user_only=True)
    ours = sum(
        sampler.cpu_cores(name, t0, t1) for name in ("worker", "driver", "sink") if name in sampler.samples
    )
    run.other_cores = max(0.0, sampler.cpu_cores("machine", t0, t1) - ours)
    baseline = (
        sampler.rss_before("worker", driver_started)
        if mode in ("worker", "realtime")
        else int(drive["rss_start"][0])
    )
    run.rss_per_call = (sampler.rss_peak(under_test, t0, t1) - baseline) / calls
    if mode != "pace":
        run.sink_cores = sampler.cpu_cores("sink", t0, t1)
        read_arrivals(run, drive["sent_at"], np.load(sink_out), t0, t1)
    return run


def read_arrivals(run: Run, sent_at: np.ndarray, sink: np.lib.npyio.NpzFile, t0: float, t1: float) -> None:
    """Forward latencies (all, and of the frames sent in [t0, t1]), frames lost and the largest
    send gap, from the driver's send times and the sink's arrivals."""
    keys = sink["calls"].astype(np.int64) * sent_at.shape[1] + sink["frames"]
    order = np.lexsort((sink["times"], keys))
    keys, times = keys[order], sink["times"][order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]  # a replayed frame counts at its first arrival
    keys, times = keys[first], times[first]
    sent = sent_at.reshape(-1)[keys]
    run.all_latencies_ms = (times - sent) * 1000
    run.latencies_ms = run.all_latencies_ms[(sent >= t0) & (sent <= t1)]
    run.missing_frames = int(np.count_nonzero(~np.isnan(sent_at))) - len(keys)
    gaps = sink["max_gaps"]
    run.max_gap_ms = float(gaps.max() * 1000) if len(gaps) else float("nan")


def table(runs: dict[str, Run], calls: int, seconds: float) -> str:
    worker, sdk, pace = runs["worker"], runs.get("sdk"), runs.get("pace")
    sdk_net = None
    if sdk is not None and pace is not None:
        sdk_net = sdk.cores - pace.cores

    def per_call_s(cores: float | None) -> str:
        return "n/a" if cores is None or np.isnan(cores) else f"{cores / calls * 1000:.3f} ms"

    def cores(value: float | None) -> str:
        return "n/a" if value is None or np.isnan(value) else f"{value:.2f}"

    def pct(run: Run | None, q: float, whole: bool = False) -> str:
        values = None if run is None else run.all_latencies_ms if whole else run.latencies_ms
        if values is None or not len(values):
            return "n/a"
        return f"{np.percentile(values, q):.1f} ms"

    def kib(run: Run | None) -> str:
        return "n/a" if run is None else f"{run.rss_per_call / 1024:.0f} KiB"

    rows = [
        ("", "asr-worker", "deepgram-sdk direct"),
        ("calls x seconds", f"{calls} x {seconds:g}", f"{calls} x {seconds:g}" if sdk else "n/a"),
        (
            "CPU time per call-second",
            per_call_s(worker.cores),
            per_call_s(sdk_net) + " (net of pacing)" if sdk_net is not None else "n/a",
        ),
        (
            "cores for all calls",
            cores(worker.cores),
            f"{cores(sdk.cores)} ({cores(pace.cores)} pacing)" if sdk and pace else "n/a",
        ),
        (
            "  of which user / system",
            f"{cores(worker.user_cores)} / {cores(worker.cores - worker.user_cores)}",
            f"{cores(sdk.user_cores)} / {cores(sdk.cores - sdk.user_cores)}" if sdk else "n/a",
        ),
        ("forward latency p50", pct(worker, 50), pct(sdk, 50)),
        ("forward latency p99", pct(worker, 99), pct(sdk, 99)),
        ("forward latency max", pct(worker, 100), pct(sdk, 100)),
        (
            "  whole run p99 / max",
            f"{pct(worker, 99, True)} / {pct(worker, 100, True)}",
            f"{pct(sdk, 99, True)} / {pct(sdk, 100, True)}" if sdk else "n/a",
        ),
        ("largest send gap", f"{worker.max_gap_ms:.0f} ms", f"{sdk.max_gap_ms:.0f} ms" if sdk else "n/a"),
        ("memory per call", kib(worker), kib(sdk)),
        ("frames lost", str(worker.missing_frames), str(sdk.missing_frames) if sdk else "n/a"),
        ("calls ended", f"{worker.ended}/{calls}", f"{sdk.ended}/{calls}" if sdk else "n/a"),
        (
            "driver / sink cores",
            f"{cores(worker.driver_cores)} / {cores(worker.sink_cores)}",
            f"- / {cores(sdk.sink_cores)}" if sdk else "n/a",
        ),
        ("other processes' cores", cores(worker.other_cores), cores(sdk.other_cores) if sdk else "n/a"),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    if sdk_net:
        lines.append("")
        lines.append(f"asr-worker CPU / deepgram-sdk CPU (per call-second): {worker.cores / sdk_net:.2f}")
    return "\n".join(lines)


def round_summary(rounds: list[dict[str, Run]]) -> str:
    """Each round's worker and net SDK cores and their ratio; the table above is the last round."""
    lines = ["round  worker cores  sdk cores (net)  ratio"]
    ratios = []
    for number, runs in enumerate(rounds, 1):
        worker, sdk_net = runs["worker"].cores, runs["sdk"].cores - runs["pace"].cores
        ratios.append(worker / sdk_net)
        lines.append(f"{number:<5}  {worker:<12.2f}  {sdk_net:<15.2f}  {ratios[-1]:.2f}")
    lines.append(f"median ratio over {len(rounds)} rounds: {float(np.median(ratios)):.2f}")
    return "\n".join(lines)


COMPARED = "worker+"  # the phase of the worker with --compare-env's settings


def compare_summary(rounds: list[dict[str, Run]], settings: list[str]) -> str:
    """Each round's worker cores without and with `settings`, their ratio, and the median."""
    lines = [f"round  worker cores  with {' '.join(settings)}  ratio"]
    ratios = []
    for number, runs in enumerate(rounds, 1):
        plain, compared = runs["worker"].cores or 0.0, runs[COMPARED].cores or 0.0
        ratios.append(compared / plain if plain else float("nan"))
        lines.append(
            f"{number:<5}  {plain:<12.3f}  {compared:<{6 + len(' '.join(settings))}.3f}  {ratios[-1]:.3f}"
        )
    lines.append(f"median ratio over {len(rounds)} rounds: {float(np.median(ratios)):.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--no-sdk", action="store_true", help="measure the worker only")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the worker, SDK and pacing phases this many times, alternating, and print each "
        "round's ratio and their median (CPU time on a shared VM drifts by 10-20%% between runs)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the process under test to CPU 0, the harness to CPU 1",
    )
    parser.add_argument(
        "--api-keys",
        type=int,
        default=0,
        help="give the worker this many tenants' keys (ASR_API_KEYS, in a file) and every call one "
        "of them: what checking a key on each connection costs",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", help="keep the raw send and arrival records (.npz) in this directory")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra worker settings, e.g. ASR_SEND_CHUNK_MS=100",
    )
    parser.add_argument(
        "--compare-env",
        action="append",
        default=[],
        metavar="K=V",
        help="also run the worker with these settings in each round, alternating with the plain "
        "worker (the order swapped every round), and print the CPU ratio, e.g. ASR_REDACT=pci: "
        "what redacting every call costs",
    )
    parser.add_argument(
        "--sink-digits",
        action="store_true",
        help="the sink's engine answers digit words only: every transcript a card number, the "
        "worst case for redaction",
    )
    args = parser.parse_args()
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    driver_extra: tuple[str, ...] = ()
    if args.api_keys:
        keys_file = Path(tempfile.mkdtemp(prefix="asr-bench-keys-")) / "keys"
        keys = [f"bench-key-{n:06d}-{os.urandom(8).hex()}" for n in range(args.api_keys)]
        keys_file.write_text("".join(f"{key}:tenant-{n % 50}:stream\n" for n, key in enumerate(keys)))
        worker_env["ASR_API_KEYS"] = str(keys_file)
        driver_extra = ("--key", keys[-1])  # the last: a key found after every other is compared
    pinned = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    load_before = os.getloadavg()
    rounds: list[dict[str, Run]] = []
    with tempfile.TemporaryDirectory(prefix="bench-dg-") as scratch:
        tmp = args.keep or scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        phases = ["worker"] if args.no_sdk else ["worker", "sdk", "pace"]
        compare_env = dict(item.split("=", 1) for item in args.compare_env)
        for round_no in range(max(1, args.rounds)):
            runs: dict[str, Run] = {}
            order = list(phases)
            if compare_env:  # alternated: plain first in odd rounds, compared first in even ones
                order.insert(1 if round_no % 2 == 0 else 0, COMPARED)
            for phase in order:
                label = f" (round {round_no + 1}/{args.rounds})" if args.rounds > 1 else ""
                print(
                    f"running {phase}: {args.calls} calls x {args.seconds:g} s{label} ...",
                    file=sys.stderr,
                    flush=True,
                )
                compared = phase == COMPARED
                runs[phase] = run_phase(
                    "worker" if compared else phase,
                    args.calls,
                    args.seconds,
                    Path(tmp),
                    {**worker_env, **compare_env} if compared else worker_env,
                    pinned,
                    driver_extra=driver_extra,
                    label="worker-compared" if compared else "",
                    sink_digits=args.sink_digits,
                )
            rounds.append(runs)
    runs = rounds[-1]
    print(
        f"python -m bench.deepgram --calls {args.calls} --seconds {args.seconds:g}"
        + (f" --rounds {args.rounds}" if args.rounds > 1 else "")
        + (" --no-sdk" if args.no_sdk else "")
        + "".join(f" --worker-env {e}" for e in args.worker_env)
        + "".join(f" --compare-env {e}" for e in args.compare_env)
        + (" --sink-digits" if args.sink_digits else "")
        + f"   (load average before: {load_before[0]:.2f}, {os.cpu_count()} cores"
        + (", the process under test on CPU 0, the harness on CPU 1)" if pinned else ")")
    )
    print(table(runs, args.calls, args.seconds))
    if len(rounds) > 1 and not args.no_sdk:
        print()
        print(round_summary(rounds))
    if args.compare_env:
        print()
        print(compare_summary(rounds, args.compare_env))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    name: {
                        "cores": run.cores,
                        "user_cores": run.user_cores,
                        "driver_cores": run.driver_cores,
                        "sink_cores": run.sink_cores,
                        "rss_per_call": run.rss_per_call,
                        "p50_ms": float(np.percentile(run.latencies_ms, 50))
                        if len(run.latencies_ms)
                        else None,
                        "p99_ms": float(np.percentile(run.latencies_ms, 99))
                        if len(run.latencies_ms)
                        else None,
                        "max_gap_ms": run.max_gap_ms,
                        "whole_run_p99_ms": float(np.percentile(run.all_latencies_ms, 99))
                        if len(run.all_latencies_ms)
                        else None,
                        "other_cores": run.other_cores,
                        "missing_frames": run.missing_frames,
                        "ended": run.ended,
                    }
                    for name, run in runs.items()
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
