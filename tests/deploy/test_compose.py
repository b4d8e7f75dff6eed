"""compose.yaml, read as `docker compose` would: Redis and two workers built from the
Containerfile on the Redis bus, with health checks, a required token and the worker's port.
(tests/deploy/test_image.py runs two workers from the built image with these settings.)"""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.support.deploy import (
    ROOT,
    containerfile_exec_form,
    containerfile_instruction,
    load_compose,
    mapping,
    strings,
    workers,
)


def test_redis_and_two_workers_built_from_the_containerfile() -> None:
    services = load_compose()
    assert set(services) == {"redis", "worker-1", "worker-2"}
    redis = services["redis"]
    assert str(redis.spec["image"]).startswith("redis:")
    assert redis.healthcheck_test[-2:] == ["redis-cli", "ping"]
    built = workers(services)
    assert [w.name for w in built] == ["worker-1", "worker-2"]
    for worker in built:
        build = worker.get("build")
        assert (ROOT / str(build["context"]) / str(build["dockerfile"])).resolve() == ROOT / "Containerfile"
        assert worker.spec["image"] == built[0].spec["image"], "one image for both"
        assert mapping(worker.get("depends_on")["redis"], "depends_on.redis") == {
            "condition": "service_healthy"
        }


def test_the_workers_share_the_redis_bus_and_need_a_token() -> None:
    services = load_compose()
    for worker in workers(services):
        env = worker.environment
        assert env["PUBSUB_ADAPTER"] == "redis_streams"
        redis_url = urlsplit(env["REDIS_URL"])
        assert redis_url.scheme == "redis" and redis_url.hostname in services
        # ${VAR:?message}: compose refuses to start without it, naming it
        assert env["ASR_WORKER_TOKEN"].startswith("${ASR_WORKER_TOKEN:?")


def test_the_workers_health_check_port_and_stop_signal_are_the_images() -> None:
    exposed = containerfile_instruction("EXPOSE")
    host_ports = []
    for worker in workers(load_compose()):
        assert worker.healthcheck_test == ["CMD", *containerfile_exec_form("HEALTHCHECK")]
        assert worker.spec["stop_signal"] == containerfile_instruction("STOPSIGNAL") == "SIGTERM"
        ports = strings(worker.spec["ports"], f"{worker.name}.ports")
        assert [p.rsplit(":", 1)[1] for p in ports] == [exposed]
        host_ports += [p.rsplit(":", 1)[0] for p in ports]
    assert len(set(host_ports)) == len(host_ports) == 2, "each worker on its own host port"


def test_the_containerfile_runs_the_worker_exec_form_as_a_non_root_user() -> None:
    assert containerfile_exec_form("CMD") == ["/opt/asr-worker/bin/asr-worker", "serve"]
    assert containerfile_instruction("USER") not in ("root", "0")
    assert (ROOT / "Containerfile").read_text().startswith("# ")
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in (ROOT / "Containerfile").read_text()
