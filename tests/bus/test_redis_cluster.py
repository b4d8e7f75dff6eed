"""The bus on a real Redis Cluster (three masters, three replicas): workers share calls whose
keys carry their id as a hash tag, a worker killed with kill -9 has its calls finished by
another, and a master killed with kill -9 is replaced by its replica while calls go on.

Redis replicates asynchronously: what a master acknowledged in its last moments may not have
reached its replica. The master test says how much that was, and checks what the bus promises
even then: every call ends, its events keep their order, and no word is repeated."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from bench.redis_cluster import RedisClusterNodes
from redis.asyncio.cluster import RedisCluster

from asr_worker.bus.redis.wire import CALLS_KEY, GROUP, audio_key, progress_key, transcript_key
from asr_worker.providers.mock import expected_words
from asr_worker.tools.audio_files import AudioFile, write_wav
from asr_worker.tools.publish import publish_call
from tests.support.audio import PCM8K
from tests.support.cli import CLI, assert_clean_stderr
from tests.support.redis_server import final_words, until
from tests.support.workers import worker_processes

from .conftest import call_audio
from .test_redis_workers import check_complete

Event = dict[str, object]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path / "cluster")
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def rc(cluster: RedisClusterNodes) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.url)
    try:
        yield client
    finally:
        await client.aclose()


async def transcript(rc: RedisCluster, iid: str) -> list[Event]:
    raw: object = await rc.xrange(transcript_key(iid, cluster=True))
    return [json.loads(fields[b"data"]) for _, fields in raw] if isinstance(raw, list) else []


async def wait_for_ends(rc: RedisCluster, ids: list[str], timeout_s: float) -> dict[str, list[Event]]:
    done: dict[str, list[Event]] = {}
    async with asyncio.timeout(timeout_s):
        while len(done) < len(ids):
            for iid in ids:
                if iid not in done:
                    try:
                        events = await transcript(rc, iid)
                    except Exception:
                        continue
                    if any(e["type"] == "session_ended" for e in events):
                        done[iid] = events
            await asyncio.sleep(0.1)
    return done


async def publish_all(url: str, calls: dict[str, AudioFile], speed: float) -> None:
    async with asyncio.TaskGroup() as tg:
        for iid, audio in calls.items():
            tg.create_task(publish_call(audio, url, iid, speed=speed, cluster=True))


def cluster_env(claim_idle_s: float = 15.0) -> dict[str, str]:
    return {"REDIS_CLUSTER": "true", "ASR_CLAIM_IDLE_S": str(claim_idle_s), "ASR_MAX_SESSIONS": "10"}


async def test_two_workers_share_calls_across_the_masters_each_call_in_one_slot(
    cluster: RedisClusterNodes, rc: RedisCluster, tmp_path: Path
) -> None:
    calls = {f"c{i}": call_audio(2.0, seed=400 + i) for i in range(8)}
    async with worker_processes(2, cluster.url, tmp_path, **cluster_env()) as workers:
        await publish_all(cluster.url, calls, speed=2)
        done = await wait_for_ends(rc, list(calls), timeout_s=60)
        taken = {w.name: w.calls() for w in workers}
    assert sorted(iid for ids in taken.values() for iid in ids) == sorted(calls)
    assert all(taken.values()), f"both workers served calls: {taken}"
    for iid, events in done.items():
        check_complete(events, calls[iid])
        # the keys are literally tagged with the call's id, so they share its slot
        assert {
            cluster.master_of(k(iid, cluster=True)) for k in (audio_key, progress_key, transcript_key)
        } == {cluster.master_of(f"{{{iid}}}")}
    masters = {cluster.master_of(f"{{{iid}}}") for iid in calls}
    assert len(masters) >= 2, "the calls' keys are spread over the cluster's masters"
    assert (await rc.xpending(CALLS_KEY, GROUP))["pending"] == 0


async def test_a_worker_killed_mid_call_has_its_calls_finished_by_the_other(
    cluster: RedisClusterNodes, rc: RedisCluster, tmp_path: Path
) -> None:
    calls = {f"k{i}": call_audio(5.0, seed=500 + i) for i in range(4)}
    async with worker_processes(2, cluster.url, tmp_path, **cluster_env(claim_idle_s=2.0)) as workers:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(publish_all(cluster.url, calls, speed=1))

            async def all_have_finals() -> bool:
                return all([any(e.get("is_final") for e in await transcript(rc, iid)) for iid in calls])

            await until(all_have_finals, timeout_s=20)
            victim = max(workers, key=lambda w: len(w.calls()))
            orphans = victim.calls()
            victim.kill()
        done = await wait_for_ends(rc, list(calls), timeout_s=60)
    assert orphans
    for iid, events in done.items():
        check_complete(events, calls[iid])
        started = [e for e in events if e["type"] == "session_started"]
        assert len(started) == (2 if iid in orphans else 1)


async def test_a_master_killed_mid_call_is_replaced_by_its_replica_and_every_call_ends(
    cluster: RedisClusterNodes, rc: RedisCluster, tmp_path: Path
) -> None:
    calls = {f"m{i}": call_audio(8.0, seed=600 + i) for i in range(6)}
    async with worker_processes(2, cluster.url, tmp_path, **cluster_env(claim_idle_s=3.0)):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(publish_all(cluster.url, calls, speed=1))

            async def all_have_finals() -> bool:
                return all([any(e.get("is_final") for e in await transcript(rc, iid)) for iid in calls])

            await until(all_have_finals, timeout_s=20)
            # the master of the most calls' keys (not the one of asr:calls, when there is a choice)
            by_master: dict[int, list[str]] = {}
            for iid in calls:
                by_master.setdefault(cluster.master_of(f"{{{iid}}}"), []).append(iid)
            victim = max(by_master, key=lambda port: len(by_master[port]))
            hit = by_master[victim]
            killed_at = time.monotonic()
            cluster.kill(victim)
            cluster.wait_healthy(timeout_s=30)  # its replica has taken its slots
            failover_s = time.monotonic() - killed_at
        done = await wait_for_ends(rc, list(calls), timeout_s=90)
    lost_words = 0
    for iid, events in done.items():
        audio = calls[iid]
        seqs = [int(str(e["seq"])) for e in events]
        assert seqs == sorted(seqs), "events stay in order"
        assert [e["reason"] for e in events if e["type"] == "session_ended"] == ["end"]
        words, expected = final_words(events), expected_words(audio.data, PCM8K)
        if iid not in hit:
            check_complete(events, audio)
            continue
        # What the old master acknowledged but had not replicated is gone: words may be
        # missing, never repeated or out of order.
        assert _is_subsequence(words, expected), f"{iid}: {words} is not {expected} with gaps"
        lost_words += len(expected) - len(words)
    print(
        f"\nmaster kill -9: failover {failover_s:.1f} s; calls on that master {len(hit)}/{len(calls)}; "
        f"words lost {lost_words} of {sum(len(expected_words(calls[i].data, PCM8K)) for i in hit)}",
        file=sys.stderr,
    )


def _is_subsequence(part: list[str], whole: list[str]) -> bool:
    rest = iter(whole)
    return all(word in rest for word in part)


async def test_publish_cluster_puts_a_file_on_the_cluster_and_follows_its_transcript(
    cluster: RedisClusterNodes, rc: RedisCluster, tmp_path: Path
) -> None:
    audio = call_audio(1.6, seed=700)
    wav = tmp_path / "call.wav"
    write_wav(wav, audio.data, audio.fmt)
    async with worker_processes(1, cluster.url, tmp_path, **cluster_env()):
        result = await asyncio.create_subprocess_exec(
            *CLI,
            *("publish", str(wav), "--interaction-id", "cli-c1", "--redis-url", cluster.url),
            *("--cluster", "--speed", "4", "--follow"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(result.communicate(), 30)
    assert result.returncode == 0, err.decode()
    assert_clean_stderr(err.decode())
    text = out.decode()
    assert "[cli-c1] session_ended reason end, 1.60 s of audio" in text
    assert final_words(await transcript(rc, "cli-c1")) == expected_words(audio.data, PCM8K)
    assert await rc.exists("transcript.{cli-c1}") == 1  # the braces are in the key itself
