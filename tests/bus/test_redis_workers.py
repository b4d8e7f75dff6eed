"""Several `asr-worker serve` processes on one real redis-server: sharing calls, a worker killed
with kill -9 mid-call, SIGTERM hand-over, ASR_MAX_SESSIONS, and the `publish` command.

The mock provider's words are a deterministic function of each 200 ms window of the audio it
hears, so a call's final words equal `expected_words` of its whole audio only if every frame
reached a provider exactly once, in order, and no final word was lost or repeated at takeover.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from asr_worker.bus.redis.wire import CALLS_KEY, GROUP
from asr_worker.providers.mock import expected_words
from asr_worker.tools.audio_files import AudioFile, write_wav
from asr_worker.tools.publish import publish_call
from tests.conftest import free_port
from tests.support.audio import PCM8K
from tests.support.cli import CLI, assert_clean_stderr, logging_command, run_cli
from tests.support.redis_server import RedisServer, final_words, transcript, until, wait_for_calls_to_end
from tests.support.workers import WorkerProcess, worker_processes

from .conftest import call_audio

Event = dict[str, object]


def check_complete(events: list[Event], audio: AudioFile) -> None:
    """The call's transcript is whole: numbered without gaps, one end, every word once."""
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    ended = [e for e in events if e["type"] == "session_ended"]
    assert [e["reason"] for e in ended] == ["end"]
    assert ended[0]["audio_s"] == pytest.approx(audio.duration_s)  # every byte, call-relative
    assert final_words(events) == expected_words(audio.data, PCM8K)


async def publish_all(url: str, calls: dict[str, AudioFile], speed: float) -> None:
    async with asyncio.TaskGroup() as tg:
        for iid, audio in calls.items():
            tg.create_task(publish_call(audio, url, iid, speed=speed))


@pytest.mark.parametrize("count", [2, 3])
async def test_workers_share_20_calls_and_each_call_is_on_exactly_one(
    count: int, redis_server: RedisServer, r: aioredis.Redis, tmp_path: Path
) -> None:
    calls = {f"share-{count}-{i}": call_audio(2.0, seed=100 + i) for i in range(20)}
    max_sessions = 20 // count + 1  # room for every call, but no worker can take them all
    env = {"ASR_MAX_SESSIONS": str(max_sessions)}
    async with worker_processes(count, redis_server.url, tmp_path, **env) as workers:
        await publish_all(redis_server.url, calls, speed=2)
        done = await wait_for_calls_to_end(r, list(calls), timeout_s=60)
        taken = {w.name: w.calls() for w in workers}
    every = sorted(iid for ids in taken.values() for iid in ids)
    assert every == sorted(calls), "each call was taken by exactly one worker, once"
    assert all(taken.values()), f"every worker served calls: {taken}"
    for iid, events in done.items():
        assert len([e for e in events if e["type"] == "session_started"]) == 1
        check_complete(events, calls[iid])


async def test_a_worker_killed_mid_call_has_its_calls_finished_by_the_others(
    redis_server: RedisServer, r: aioredis.Redis, tmp_path: Path
) -> None:
    claim_idle_s = 2.0
    calls = {f"kill-{i}": call_audio(5.0, seed=200 + i) for i in range(6)}
    env = {"ASR_CLAIM_IDLE_S": str(claim_idle_s), "ASR_MAX_SESSIONS": "4"}
    async with worker_processes(3, redis_server.url, tmp_path, **env) as workers:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(publish_all(redis_server.url, calls, speed=1))

            async def all_have_finals() -> bool:
                return all([any(e.get("is_final") for e in await transcript(r, iid)) for iid in calls])

            await until(all_have_finals)  # mid-call: every call has final words out
            victim = max(workers, key=lambda w: len(w.calls()))
            orphans = victim.calls()
            killed_at_ms = time.time_ns() // 1_000_000
            victim.kill()
        done = await wait_for_calls_to_end(r, list(calls), timeout_s=60)
        survivors = [w for w in workers if w is not victim]
        claimed = sorted(
            str(line["interaction_id"])
            for w in survivors
            for line in w.logs()
            if line.get("msg") == "call taken" and line.get("how") == "claimed"
        )
    assert orphans and claimed == sorted(orphans)
    takeover_s = []
    for iid, events in done.items():
        check_complete(events, calls[iid])
        started = [e for e in events if e["type"] == "session_started"]
        if iid in orphans:
            assert len(started) == 2 and started[1]["resumed"] is True
            stamp = started[1]["timestamp_ms"]
            assert isinstance(stamp, int)
            takeover_s.append((stamp - killed_at_ms) / 1000)
        else:
            assert len(started) == 1
    print(
        f"\ntakeover after kill -9 (ASR_CLAIM_IDLE_S={claim_idle_s:g}): {sorted(takeover_s)} s",
        file=sys.stderr,
    )
    assert max(takeover_s) <= claim_idle_s, "taken over within ASR_CLAIM_IDLE_S"


async def test_sigterm_hands_calls_to_another_worker_at_once(
    redis_server: RedisServer, r: aioredis.Redis, tmp_path: Path
) -> None:
    calls = {f"term-{i}": call_audio(4.0, seed=300 + i) for i in range(2)}
    # Only a hand-over can explain a takeover within seconds; and a hand-over is no takeover,
    # so even ASR_MAX_TAKEOVERS=0 lets the call go on.
    env = {"ASR_CLAIM_IDLE_S": "30", "ASR_MAX_TAKEOVERS": "0"}
    async with worker_processes(2, redis_server.url, tmp_path, **env) as workers:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(publish_all(redis_server.url, calls, speed=1))

            async def all_have_finals() -> bool:
                return all([any(e.get("is_final") for e in await transcript(r, iid)) for iid in calls])

            await until(all_have_finals)
            leaving = max(workers, key=lambda w: len(w.calls()))
            handed = leaving.calls()
            leaving.terminate()
            assert await asyncio.wait_for(leaving.process.wait(), 15) == 0
        done = await wait_for_calls_to_end(r, list(calls), timeout_s=30)
        assert sorted(leaving.calls("call handed over")) == sorted(handed)
    for iid, events in done.items():
        audio = calls[iid]
        started = [e for e in events if e["type"] == "session_started"]
        if iid not in handed:
            check_complete(events, audio)
            continue
        # The leaving worker finalized what it had read, then the other went on from there.
        assert len(started) == 2 and started[1]["resumed"] is True
        offset_s = started[1]["offset_s"]
        assert isinstance(offset_s, float)
        cut = PCM8K.bytes_for(offset_s)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert [e["reason"] for e in events if e["type"] == "session_ended"] == ["end"]
        expected = expected_words(audio.data[:cut], PCM8K) + expected_words(audio.data[cut:], PCM8K)
        assert final_words(events) == expected


async def test_a_call_whose_workers_keep_dying_is_given_up_and_the_last_worker_goes_on(
    redis_server: RedisServer, r: aioredis.Redis, tmp_path: Path
) -> None:
    """Each worker that holds the call is killed with -9, as if the call's audio killed it.
    With ASR_MAX_TAKEOVERS=1 the third worker gives the call up instead of dying too."""
    env = {"ASR_CLAIM_IDLE_S": "2", "ASR_MAX_TAKEOVERS": "1"}
    async with worker_processes(3, redis_server.url, tmp_path, **env) as workers:
        producer = asyncio.create_task(publish_call(call_audio(30.0, seed=600), redis_server.url, "doomed"))
        killed: list[WorkerProcess] = []
        for _ in range(2):

            async def taken() -> bool:
                return any("doomed" in w.calls() for w in workers if w not in killed)

            await until(taken, timeout_s=15)
            holder = next(w for w in workers if w not in killed and "doomed" in w.calls())
            holder.kill()
            killed.append(holder)
        done = await wait_for_calls_to_end(r, ["doomed"], timeout_s=15)
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        (last,) = [w for w in workers if w not in killed]
        abandoned = [line for line in last.logs() if str(line.get("msg")).startswith("call abandoned")]
        async with aiohttp.ClientSession() as http, http.get(f"{last.url}/health") as response:
            assert response.status == 200 and last.process.returncode is None
    events = done["doomed"]
    assert [e["reason"] for e in events if e["type"] == "session_ended"] == ["call_abandoned"]
    assert [e["code"] for e in events if e["type"] == "error"] == ["call_abandoned"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [line["takeovers"] for line in abandoned] == [2]
    assert (await r.xpending(CALLS_KEY, GROUP))["pending"] == 0
    assert 0 < await r.ttl("asr:audio:doomed") <= 86_400


async def test_max_sessions_is_respected_and_waiting_calls_lose_nothing(
    redis_server: RedisServer, r: aioredis.Redis, tmp_path: Path
) -> None:
    calls = {f"cap-{i}": call_audio(1.4, seed=400 + i) for i in range(7)}
    at_capacity_seen = False
    async with (
        worker_processes(2, redis_server.url, tmp_path, ASR_MAX_SESSIONS="2") as workers,
        aiohttp.ClientSession() as http,
    ):
        async with asyncio.TaskGroup() as tg:
            publishing = tg.create_task(publish_all(redis_server.url, calls, speed=1))
            while not publishing.done():
                for w in workers:
                    async with http.get(f"{w.url}/ready") as response:
                        if response.status == 503 and (await response.json())["reason"] == "at_capacity":
                            at_capacity_seen = True
                await asyncio.sleep(0.05)
        done = await wait_for_calls_to_end(r, list(calls), timeout_s=60)
    assert at_capacity_seen
    for w in workers:
        assert most_concurrent(w) <= 2
    assert sum(len(w.calls()) for w in workers) == len(calls)
    for iid, events in done.items():
        check_complete(events, calls[iid])  # calls that waited were read from their start


def most_concurrent(worker: WorkerProcess) -> int:
    """The most sessions the worker ran at once, from its log lines (written in order)."""
    live = most = 0
    for line in worker.logs():
        if line.get("msg") == "session started":
            live += 1
            most = max(most, live)
        elif line.get("msg") == "session ended":
            live -= 1
    return most


async def test_publish_command_puts_a_file_on_the_bus_and_follows_its_transcript(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    audio = call_audio(1.6, seed=500)
    wav = tmp_path / "call.wav"
    write_wav(wav, audio.data, audio.fmt)
    async with worker_processes(1, redis_server.url, tmp_path):
        result = await asyncio.create_subprocess_exec(
            *CLI,
            "publish",
            str(wav),
            "--interaction-id",
            "cli-1",
            "--tenant-id",
            "acme",
            "--redis-url",
            redis_server.url,
            "--speed",
            "4",
            "--follow",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(result.communicate(), 30)
    text = out.decode()
    assert result.returncode == 0, err.decode()
    assert_clean_stderr(err)
    assert "[cli-1] final" in text and "[cli-1] session_ended reason end, 1.60 s of audio" in text
    # `[cli-1] final   ch0    0.00-1.00    words...`: the line `stream` prints too
    finals = [line.split(maxsplit=4)[4] for line in text.splitlines() if line.startswith("[cli-1] final ")]
    assert " ".join(finals).split() == expected_words(audio.data, PCM8K)
    assert "published cli-1: 80 frames, 1.60 s of audio" in err.decode()


def test_publish_command_explains_bad_input(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    result = run_cli("publish", str(bogus), "--interaction-id", "x")
    assert result.returncode == 2 and "not a WAV file" in result.stderr
    wav = tmp_path / "a.wav"
    write_wav(wav, b"\x00\x00" * 80, PCM8K)
    result = run_cli("publish", str(wav), "--interaction-id", "bad id!")
    assert result.returncode == 2 and "--interaction-id must be" in result.stderr
    closed = f"redis://:pw-s3cret@127.0.0.1:{free_port()}/0"
    result = run_cli("publish", str(wav), "--interaction-id", "x", "--redis-url", closed)
    assert result.returncode == 1 and "cannot use Redis" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "pw-s3cret" not in result.stderr


async def test_an_unreachable_redis_is_a_warning_at_start_not_silence(tmp_path: Path) -> None:
    """Nothing listens at REDIS_URL: the worker says so in its log at once (and /ready says
    503), rather than logging only info lines for as long as it runs."""
    port, log_path = free_port(), tmp_path / "worker.log"
    closed = f"redis://:pw-s3cret@127.0.0.1:{free_port()}/0"
    env = {"PORT": str(port), "ASR_PROVIDER": "mock", "PUBSUB_ADAPTER": "redis_streams", "REDIS_URL": closed}
    async with (
        logging_command("serve", env=env, log_path=log_path, until_logged="redis unreachable"),
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/ready") as ready,
    ):
        assert ready.status == 503
    text = log_path.read_text()
    warning = next(json.loads(line) for line in text.splitlines() if "redis unreachable" in line)
    assert warning["level"] == "warning" and warning["redis"].endswith(closed.rsplit("@", 1)[1])
    assert "pw-s3cret" not in text
    assert_clean_stderr(text)
