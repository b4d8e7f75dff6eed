"""A real Redis Cluster for the tests and `bench.bus --cluster`: three masters and three
replicas of Debian's `redis-server` on free ports, joined by `redis-cli --cluster create`.
Nodes can be killed (kill -9); a killed master's replica takes over after the cluster's node
timeout."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


NODE_TIMEOUT_MS = 1000  # how long a master may not answer before its replica takes over


class RedisClusterNodes:
    def __init__(self, data_dir: Path, *, masters: int = 3, replicas_each: int = 1) -> None:
        self.dir = data_dir
        # Each node's cluster bus on a port of its own (by default it is the port + 10000,
        # which a free port above 55535 cannot have). All distinct: the system may hand out a
        # port it handed out a moment ago, and two nodes on one port make a five-node cluster.
        nodes = masters * (1 + replicas_each)
        distinct = distinct_free_ports(2 * nodes)
        self.ports = distinct[:nodes]
        self.bus_ports = dict(zip(self.ports, distinct[nodes:], strict=True))
        self.masters = masters
        self.replicas_each = replicas_each
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Any one node: clients learn the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        assert binary and cli, "redis-server and redis-cli are not installed (scripts/test.sh installs them)"
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            self.processes[port] = subprocess.Popen(
                [
                    binary,
                    *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)),
                    *("--cluster-port", str(self.bus_ports[port])),
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                    *("--repl-diskless-sync-delay", "0"),  # replicas sync at once, not 5 s later
                    *("--save", "", "--appendonly", "no", "--logfile", str(node_dir / "redis.log")),
                ]
            )
        for port in self.ports:
            self._wait_ping(port)
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                str(self.replicas_each),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        self.wait_healthy()

    def _wait_ping(self, port: int) -> None:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    assert time.monotonic() < deadline, f"redis-server on {port} did not start"
                    time.sleep(0.02)
        finally:
            client.close()

    def cli(self, port: int, *args: str) -> str:
        """What `redis-cli -p PORT ARGS` prints ("" if the node does not answer)."""
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.stdout if result.returncode == 0 else ""

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Until every live node says the cluster is ok and every slot is served, and every
        replica is in sync with its master."""
        deadline = time.monotonic() + timeout_s
        while True:
            infos = [self.cli(port, "cluster", "info") for port in self.live_ports()]
            replication = [self.cli(port, "info", "replication") for port in self.live_ports()]
            if (
                infos
                and all("cluster_state:ok" in i and "cluster_slots_ok:16384" in i for i in infos)
                # every replica in sync with its master: only a synced replica can take over
                and all("role:master" in r or "master_link_status:up" in r for r in replication)
            ):
                return
            assert time.monotonic() < deadline, "the cluster did not become healthy"
            time.sleep(0.1)

    def masters_now(self) -> list[int]:
        """The ports of the live nodes that are masters now."""
        return [p for p in self.live_ports() if "role:master" in self.cli(p, "info", "replication")]

    def pid(self, port: int) -> int:
        return self.processes[port].pid

    def live_ports(self) -> list[int]:
        return [port for port, proc in self.processes.items() if proc.poll() is None]

    def master_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot, as the cluster sees it now."""
        port = self.live_ports()[0]
        slot = int(self.cli(port, "cluster", "keyslot", key).strip())
        for line in self.cli(port, "cluster", "nodes").splitlines():
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                lo, _, hi = span.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise AssertionError(f"no master serves slot {slot}")

    def kill(self, port: int) -> None:
        proc = self.processes[port]
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
