"""Benchmark: what the Redis Streams path costs next to the direct socket path, in one run.

    python -m bench.bus --calls 200 --seconds 20
    python -m bench.bus --calls 200 --seconds 20 --workers 2 --entry-ms 100
    python -m bench.bus --calls 200 --seconds 20 --workers 2 --cluster

Two phases, each with fresh processes, CPU read from /proc every 0.5 s:

1. socket: the driver (`bench.drive --mode worker`) plays N real-time calls of stamped 8 kHz
   linear16 audio in 20 ms frames over the ingest WebSocket into one `asr-worker serve`, which
   forwards them to the Deepgram-protocol sink (`bench.dg_sink`);
2. redis: the driver (`bench.drive --mode redis`) is the calls' producer on a fresh
   `redis-server`: it announces each call on `asr:calls` and writes its frames to
   `asr:audio:{ID}` as the seed system's entries (JSON, base64 audio; one XADD per 20 ms frame,
   or per `--entry-ms` of audio), and `--workers` K workers (PUBSUB_ADAPTER=redis_streams)
   share the calls and forward them to the same kind of sink. With `--cluster` Redis is a
   local Redis Cluster of three masters and three replicas (`bench/redis_cluster.py`) and the
   workers run with REDIS_CLUSTER=true; Redis's CPU is then the masters' (the replicas'
   is printed apart).

Printed per path: the workers' CPU per call-second, Redis's CPU per call-second (the
redis-server process's own CPU time), forward latency (a frame's production at the driver to
its arrival at the sink; for the Redis path that includes the XADD, the worker's read and the
wait while an entry fills), frames lost, and the harness's load. The steady window is as in
`bench.deepgram`: all calls in, the first 2 s and the last 0.5 s left out. With two or more
CPUs the workers are pinned to CPU 0 and the harness (driver, sink, Redis) to CPU 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

from .deepgram import (
    COOLDOWN_S,
    WARMUP_S,
    Run,
    Sampler,
    deepgram_worker_env,
    finish_driver,
    free_port,
    pin,
    process,
    read_arrivals,
    start_driver,
    start_sink,
    wait_http,
)
from .redis_cluster import RedisClusterNodes


@dataclass
class BusRun(Run):
    workers: int = 1
    redis_cores: float = float("nan")
    replica_cores: float = float("nan")  # a cluster's replicas, apart from its masters
    redis_commands: dict[str, tuple[int, float]] = field(default_factory=dict)  # calls, usec
    worker_cores: list[float] = field(default_factory=list)


def start_redis(tmp: Path, stack: contextlib.ExitStack) -> tuple[int, str]:
    """A fresh redis-server on a free port, nothing persisted: (pid, url)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (scripts/test.sh installs it)")
    port = free_port()
    data = tmp / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    proc = stack.enter_context(
        process(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
                "--logfile",
                str(data / "redis.log"),
            ]
        )
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.02)
    client.close()
    return proc.pid, f"redis://127.0.0.1:{port}/0"


def command_stats(urls: list[str]) -> dict[str, tuple[int, float]]:
    """Redis's own account of the commands it ran, summed over servers: {command: (calls, us)}."""
    totals: dict[str, tuple[int, float]] = {}
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        for name, value in stats.items():
            if isinstance(value, dict):
                calls, usec = totals.get(name.removeprefix("cmdstat_"), (0, 0.0))
                totals[name.removeprefix("cmdstat_")] = (
                    calls + int(value["calls"]),
                    usec + float(value["usec"]),
                )
    return totals


def run_path(
    path: str,
    calls: int,
    seconds: float,
    workers: int,
    entry_ms: int,
    tmp: Path,
    pinned: bool,
    worker_env: dict[str, str],
    cluster: bool = False,
) -> BusRun:
    py = sys.executable
    worker_cpu, harness_cpu = (0, 1) if pinned else (None, None)
    run = BusRun(path, calls, workers=workers if path == "redis" else 1)
    drive_out, sink_out = tmp / f"{path}-drive.npz", tmp / f"{path}-sink.npz"
    with contextlib.ExitStack() as stack, Sampler() as sampler:
        dg_url = start_sink(stack, sampler, sink_out, harness_cpu) + "/v1/listen"
        env = dict(worker_env)
        masters: list[str] = []
        replicas: list[str] = []
        stat_urls: list[str] = []
        if path == "redis" and cluster:
            nodes = RedisClusterNodes(tmp / "cluster")
            stack.callback(nodes.stop)
            nodes.start()
            master_ports = nodes.masters_now()
            for port in nodes.live_ports():
                pin(nodes.pid(port), harness_cpu)
                name = f"redis-{port}"
                sampler.watch(name, nodes.pid(port))
                (masters if port in master_ports else replicas).append(name)
            redis_url = nodes.url
            stat_urls = [f"redis://127.0.0.1:{port}/0" for port in master_ports]
            env |= {"PUBSUB_ADAPTER": "redis_streams", "REDIS_URL": redis_url, "REDIS_CLUSTER": "true"}
        elif path == "redis":
            redis_pid, redis_url = start_redis(tmp, stack)
            pin(redis_pid, harness_cpu)
            sampler.watch("redis", redis_pid)
            masters, stat_urls = ["redis"], [redis_url]
            env |= {"PUBSUB_ADAPTER": "redis_streams", "REDIS_URL": redis_url}
        names = []
        worker_url = ""
        for k in range(run.workers):
            port = free_port()
            worker = stack.enter_context(
                process([py, "-m", "asr_worker", "serve"], env=deepgram_worker_env(port, dg_url, calls, env))
            )
            pin(worker.pid, worker_cpu)
            wait_http(f"http://127.0.0.1:{port}/health")
            sampler.watch(f"worker{k}", worker.pid)
            names.append(f"worker{k}")
            worker_url = f"ws://127.0.0.1:{port}"
        mode, url = ("redis", redis_url) if path == "redis" else ("worker", worker_url)
        extra = ["--entry-ms", str(entry_ms), *(["--cluster"] if cluster and path == "redis" else [])]
        driver = start_driver(mode, url, calls, seconds, drive_out, *extra)
        pin(driver.pid, harness_cpu)
        sampler.watch("driver", driver.pid)
        finish_driver(driver, seconds, path)
        if path == "redis":
            run.redis_commands = command_stats(stat_urls)
        stack.close()  # stop the workers, Redis, then the sink (which writes its arrivals)
    drive = np.load(drive_out)
    t_start, t_end = (float(x) for x in drive["window"])
    t0, t1 = t_start + min(WARMUP_S, (t_end - t_start) / 3), t_end - COOLDOWN_S
    run.results, run.ended = (int(x) for x in drive["counts"])
    run.worker_cores = [sampler.cpu_cores(name, t0, t1) for name in names]
    run.cores = sum(run.worker_cores)
    run.user_cores = sum(sampler.cpu_cores(name, t0, t1, user_only=True) for name in names)
    run.driver_cores = sampler.cpu_cores("driver", t0, t1)
    run.sink_cores = sampler.cpu_cores("sink", t0, t1)
    if masters:
        run.redis_cores = sum(sampler.cpu_cores(name, t0, t1) for name in masters)
    if replicas:
        run.replica_cores = sum(sampler.cpu_cores(name, t0, t1) for name in replicas)
    ours = sum(sampler.cpu_cores(name, t0, t1) for name in sampler.samples if name != "machine")
    run.other_cores = max(0.0, sampler.cpu_cores("machine", t0, t1) - ours)
    read_arrivals(run, drive["sent_at"], np.load(sink_out), t0, t1)
    return run


def table(runs: dict[str, BusRun], calls: int, seconds: float) -> str:
    socket_run, bus_run = runs.get("socket"), runs.get("redis")
    columns = [r for r in (socket_run, bus_run) if r is not None]

    def per_call_s(cores: float) -> str:
        return "-" if np.isnan(cores) else f"{cores / calls * 1000:.3f} ms"

    def pct(run: BusRun, q: float) -> str:
        return f"{np.percentile(run.latencies_ms, q):.1f} ms" if len(run.latencies_ms) else "n/a"

    def label(run: BusRun) -> str:
        if run.name == "socket":
            return "ingest WebSocket"
        where = "Redis Cluster" if not np.isnan(run.replica_cores) else "Redis Streams"
        return f"{where} ({run.workers} worker{'s' * (run.workers > 1)})"

    rows = [
        ("", *(label(r) for r in columns)),
        ("calls x seconds", *(f"{calls} x {seconds:g}" for _ in columns)),
        ("worker CPU per call-second", *(per_call_s(r.cores) for r in columns)),
        (
            "  of which user / system",
            *(f"{r.user_cores:.2f} / {r.cores - r.user_cores:.2f} cores" for r in columns),
        ),
        ("Redis CPU per call-second", *(per_call_s(r.redis_cores) for r in columns)),
        ("  replicas' CPU per call-second", *(per_call_s(r.replica_cores) for r in columns)),
        ("forward latency p50", *(pct(r, 50) for r in columns)),
        ("forward latency p99", *(pct(r, 99) for r in columns)),
        ("forward latency max", *(pct(r, 100) for r in columns)),
        ("largest send gap", *(f"{r.max_gap_ms:.0f} ms" for r in columns)),
        ("frames lost", *(str(r.missing_frames) for r in columns)),
        ("calls ended", *(f"{r.ended}/{calls}" for r in columns)),
        ("driver / sink cores", *(f"{r.driver_cores:.2f} / {r.sink_cores:.2f}" for r in columns)),
        ("other processes' cores", *(f"{r.other_cores:.2f}" for r in columns)),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    if bus_run is not None and bus_run.redis_commands:
        total_call_s = calls * seconds
        lines.append("")
        lines.append("Redis commands (whole run, Redis's own time per call-second):")
        top = sorted(bus_run.redis_commands.items(), key=lambda kv: -kv[1][1])[:6]
        for name, (count, usec) in top:
            rate = count / total_call_s
            lines.append(f"  {name:<12} {rate:7.1f} per call-second  {usec / total_call_s / 1000:.3f} ms")
    if socket_run is not None and bus_run is not None:
        lines.append("")
        lines.append(
            f"Redis path worker CPU / socket path worker CPU: {bus_run.cores / socket_run.cores:.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="workers sharing the Redis path's calls")
    parser.add_argument(
        "--entry-ms", type=int, default=20, help="audio per Redis entry: 20 (a frame) or more"
    )
    parser.add_argument("--paths", default="socket,redis", help="which paths to run, comma-separated")
    parser.add_argument(
        "--cluster", action="store_true", help="the Redis path on a local Redis Cluster (3+3)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the workers to CPU 0, the harness to CPU 1"
    )
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="K=V", help="extra worker settings"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    pinned = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    load_before = os.getloadavg()
    runs: dict[str, BusRun] = {}
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        for path in args.paths.split(","):
            print(f"running {path}: {args.calls} calls x {args.seconds:g} s ...", file=sys.stderr, flush=True)
            runs[path] = run_path(
                path,
                args.calls,
                args.seconds,
                args.workers,
                args.entry_ms,
                Path(tmp),
                pinned,
                worker_env,
                cluster=args.cluster,
            )
    print(
        f"python -m bench.bus --calls {args.calls} --seconds {args.seconds:g} --workers {args.workers}"
        f" --entry-ms {args.entry_ms}"
        + (" --cluster" if args.cluster else "")
        + "".join(f" --worker-env {e}" for e in args.worker_env)
        + f"   (load average before: {load_before[0]:.2f}, {os.cpu_count()} cores"
        + (", workers on CPU 0, the harness on CPU 1)" if pinned else ")")
    )
    print(table(runs, args.calls, args.seconds))
    if args.json:
        figures = {
            name: {
                "worker_ms_per_call_s": run.cores / args.calls * 1000,
                "redis_ms_per_call_s": run.redis_cores / args.calls * 1000,
                "p50_ms": float(np.percentile(run.latencies_ms, 50)) if len(run.latencies_ms) else None,
                "p99_ms": float(np.percentile(run.latencies_ms, 99)) if len(run.latencies_ms) else None,
                "missing_frames": run.missing_frames,
                "ended": run.ended,
                "workers": run.workers,
            }
            for name, run in runs.items()
        }
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
