"""The `asr-worker` command. Each subcommand is a small function here that parses its own flags
and calls into the package; each names the settings sections it takes (`config`), whose rows
make its configuration flags and their help."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Final

from . import __version__, config, logs
from .bus.redis.options import RedisOptions
from .config import ENGINE_SECTIONS, WORKER_SECTIONS, Settings
from .dgserver import settings as dg_settings
from .errors import ConfigError, StartError
from .http import options as http_options
from .settings import Section
from .tools import protocols

if TYPE_CHECKING:
    from .core.audio import AudioFormat
    from .settings import Options
    from .tools.audio_files import AudioFile
    from .tools.protocols.base import Keys, SipOptions

log = logging.getLogger("asr_worker")

Command = Callable[[argparse.Namespace], int]

# The settings each command takes: serve all of the worker's; transcribe the speech pipeline's;
# dg-server its own and a speech engine's.
SERVE: Final = WORKER_SECTIONS
TRANSCRIBE: Final = ENGINE_SECTIONS
DG_SERVER: Final = dg_settings.SECTIONS


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        return command(args)
    except ConfigError as exc:
        print(f"asr-worker: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-worker",
        description="Live call transcription: one streaming speech-to-text session per call.",
    )
    parser.add_argument("--version", action="version", version=f"asr-worker {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the worker: HTTP and WebSocket server, sessions, provider, bus",
        description="Run the worker. Every option is also an environment variable.",
    )
    _add_sections(serve, SERVE)
    serve.set_defaults(command=_serve)

    stream = commands.add_parser(
        "stream",
        help="play an audio file into a running worker at real time over any of its routes; print the events",
        description=(
            "Play FILE into a running worker as a live call at real time, over the route --protocol "
            "names, speaking that platform's own messages, and print the call's events one line each "
            "(read back on the route where it returns them, else over SSE)."
        ),
    )
    stream.add_argument("file", help="a WAV file (PCM16, mu-law or A-law), or raw audio with --encoding")
    stream.add_argument(
        "--url",
        required=True,
        help="the worker's ws://HOST:PORT (ingest: also ws://HOST:PORT/v1/audio/ID; deepgram: dg-server's)",
    )
    stream.add_argument(
        "--protocol",
        default="ingest",
        choices=protocols.NAMES,
        help="the route, spoken as its platform speaks it (deepgram: dg-server's /v1/listen; siprec: SIP and "
        "RTP to --sip-port; audiosocket: TCP to --audiosocket-port; jambonz_stt: jambonz's speech vendor "
        "API) [ingest]",
    )
    stream.add_argument(
        "--id",
        default=None,
        help="the call's interaction id (audiosocket: a UUID) [from the ingest URL, else made up]",
    )
    stream.add_argument("--calls", type=int, default=1, help="parallel calls (ids get -1..-N)")
    stream.add_argument("--chunk-ms", type=int, default=None, help="audio per message, ms [the platform's]")
    stream.add_argument("--speed", type=float, default=1.0, help="1 = real time, 0 = as fast as possible")
    stream.add_argument("--json", action="store_true", help="print each message as the route sent it")
    stream.add_argument(
        "--api-key",
        "--token",
        dest="api_key",
        default=None,
        help="the route's key [env ASR_WORKER_TOKEN; for audiohook ASR_AUDIOHOOK_API_KEY, for deepgram "
        "DG_SERVER_API_KEY]",
    )
    stream.add_argument(
        "--watch-key", default=None, help="a key with watch scope, for the events over SSE [the --api-key]"
    )
    stream.add_argument("--tenant-id", default=None, help="the call's tenant, for a key that names tenants")
    stream.add_argument(
        "--client-secret",
        default=None,
        help="audiohook: the key's base64 client secret, signs the upgrade [env ASR_AUDIOHOOK_CLIENT_SECRET]",
    )
    stream.add_argument(
        "--twilio-auth-token",
        default=None,
        help="twilio: an account's auth token, to sign the upgrade with X-Twilio-Signature",
    )
    stream.add_argument(
        "--vonage-signature-secret",
        default=None,
        help="vonage: an account's signature secret, to sign the upgrade with Vonage's JWT (the worker's "
        "ASR_VONAGE_SIGNATURE_SECRETS holds it)",
    )
    stream.add_argument(
        "--sip-port",
        type=int,
        default=5060,
        help="siprec: the worker's SIP port (ASR_SIPREC_PORT) on the --url's host [5060]",
    )
    stream.add_argument(
        "--sip-id-header",
        default=None,
        help="siprec: a SIP header to carry the call's id in too, for a worker whose ASR_SIPREC_ID_HEADER "
        "names it [the id goes in the metadata's session id]",
    )
    stream.add_argument(
        "--audiosocket-port",
        type=int,
        default=9092,
        help="audiosocket: the worker's AudioSocket port (ASR_AUDIOSOCKET_PORT) on the --url's host [9092]",
    )
    _raw_format_arguments(stream)
    stream.set_defaults(command=_stream)

    transcribe = commands.add_parser(
        "transcribe",
        help="transcribe audio files through the session pipeline (the local engine by default)",
        description=(
            "Transcribe audio files through the same session pipeline as a live call, without a "
            "server. Finals go to stdout; on a terminal the current interim and a progress bar "
            "show on stderr. Every configuration option is also an environment variable."
        ),
    )
    transcribe.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="wav, flac, mp3 (anything FFmpeg reads), or raw with --encoding",
    )
    transcribe.add_argument("--json", action="store_true", help="print every event as a JSON line")
    transcribe.add_argument("--realtime", action="store_true", help="feed at 1x, as a live call would arrive")
    _raw_format_arguments(transcribe)
    _add_sections(transcribe, TRANSCRIBE)
    transcribe.set_defaults(command=_transcribe)

    publish = commands.add_parser(
        "publish",
        help="put a file on the Redis bus as a live call (asr:calls, asr:audio:{ID})",
        description="Announce FILE as a call on the Redis bus and write its audio at real time.",
    )
    publish.add_argument("file", help="a WAV file (PCM16, mu-law or A-law), or raw audio with --encoding")
    publish.add_argument("--interaction-id", required=True, help="the call's id")
    publish.add_argument("--tenant-id", default=None, help="the call's tenant")
    publish.add_argument(
        "--keyterm",
        action="append",
        default=[],
        help="a word or phrase the call is expected to use; repeat it once per term",
    )
    publish.add_argument(
        "--redis-url", default=None, help=f"Redis [env REDIS_URL; default {RedisOptions().url}]"
    )
    publish.add_argument("--chunk-ms", type=int, default=20, help="audio per frame, ms [20]")
    publish.add_argument("--speed", type=float, default=1.0, help="1 = real time, 0 = as fast as possible")
    publish.add_argument("--follow", action="store_true", help="print the call's transcript until it ends")
    publish.add_argument(
        "--cluster",
        action="store_true",
        help="--redis-url names a node of a Redis Cluster (per-call keys as asr:audio:{ID})",
    )
    _raw_format_arguments(publish)
    publish.set_defaults(command=_publish)

    dg_server = commands.add_parser(
        "dg-server",
        help="serve Deepgram's live /v1/listen and Flux /v2/listen from the local engine (SDKs, tests)",
        description="A local server that speaks Deepgram's live /v1/listen protocol and its Flux "
        "turn-taking /v2/listen, backed by the speech engine ASR_PROVIDER names, with fault-injection "
        "flags. The official Deepgram SDKs can talk to it. Every option is also an environment variable.",
    )
    _add_sections(dg_server, DG_SERVER)
    dg_server.set_defaults(command=_dg_server)
    return parser


def _add_sections(parser: argparse.ArgumentParser, sections: tuple[Section[Options], ...]) -> None:
    """Each section's flags under its own heading (flag, or environment variable)."""
    for section in sections:
        if section.rows:
            section.add_arguments(parser, f"{section.title} (flag, or environment variable)")


def _raw_format_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoding", default=None, help="raw audio: linear16, mulaw or alaw")
    parser.add_argument("--sample-rate", default=None, help="raw audio: samples per second")
    parser.add_argument("--channels", default="1", help="raw audio: 1 or 2")


def _raw_format(args: argparse.Namespace) -> AudioFormat | None:
    """The raw-audio format the flags give, or None when no --encoding says the file is raw.
    A raw file has no header to read the rest from, so --encoding needs --sample-rate."""
    from .core.audio import AudioFormat

    if not args.encoding:
        if args.sample_rate is not None:
            raise ValueError("--sample-rate is for raw audio: give --encoding too (linear16, mulaw or alaw)")
        return None
    if args.sample_rate is None:
        raise ValueError("raw audio needs --sample-rate (and --channels if not 1) with --encoding")
    return AudioFormat.parse(args.encoding, args.sample_rate, args.channels)


def run_loop(main: Coroutine[object, object, int]) -> int:
    """Run a server on uvloop where it is installed (Linux and macOS wheels): sockets, timers
    and callbacks are much of the worker's work, and uvloop does them in C.

    The garbage collector is tuned first. A worker allocates many short-lived objects per
    audio frame (freed by reference counting, not by the collector) and holds many long-lived
    ones (sessions, recent events); with CPython's default thresholds the collector runs every
    700 allocations, and its full passes stop the loop long enough to delay every call's
    audio (the figures are in docs/performance.md)."""
    gc.freeze()  # what start-up built lives as long as the process: never scan it again
    gc.set_threshold(50_000, 20, 100)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _serve(args: argparse.Namespace) -> int:
    settings = config.load_settings(os.environ, args, SERVE)
    logs.configure(settings.of(logs.SETTINGS).level)
    for section in SERVE:  # a last line of defence: every secret is hidden wherever it appears
        for secret in config.secrets(settings, section):
            logs.register_secret(secret)
    return run_loop(_serve_until_signalled(settings))


async def _serve_until_signalled(settings: Settings) -> int:
    from .worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        worker = Worker(settings)
    except (ValueError, ImportError) as exc:
        print(f"asr-worker: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        await worker.serve(stop)
    except Exception as exc:
        listener = settings.of(http_options.SETTINGS)
        if (line := _start_failure("asr-worker", "", listener.host, listener.port, exc)) is None:
            raise
        print(line, file=sys.stderr)
        return 2
    return 0


def _leaf(exc: BaseException, kinds: tuple[type[Exception], ...]) -> BaseException | None:
    """The first exception of `kinds` in `exc`, looking inside task groups' exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _leaf(inner, kinds)) is not None:
                return found
        return None
    return exc if isinstance(exc, kinds) else None


def _start_failure(command: str, env_prefix: str, host: str, port: int, exc: BaseException) -> str | None:
    """The one line (as a bad setting's) for what stopped a server from starting: a port in use
    or an address this machine does not have, or a provider that cannot start (a model that
    does not load), however deep the task groups that started them nested it; else None."""
    cause = _leaf(exc, (OSError, StartError))
    if isinstance(cause, OSError):
        return (
            f"{command}: cannot listen on {host}:{port}: {cause.strerror or cause}; choose another "
            f"with {env_prefix}PORT or --port ({env_prefix}HOST or --host for the address)"
        )
    return None if cause is None else f"{command}: cannot start: {cause}"


def _dg_server(args: argparse.Namespace) -> int:
    settings = config.load_settings(os.environ, args, DG_SERVER)
    if settings.provider == "deepgram":
        raise ConfigError("ASR_PROVIDER=deepgram makes no sense for dg-server: it serves a local engine")
    logs.configure(settings.of(logs.SETTINGS).level)
    for section in DG_SERVER:
        for secret in config.secrets(settings, section):
            logs.register_secret(secret)
    return run_loop(_dg_server_until_signalled(settings))


async def _dg_server_until_signalled(settings: Settings) -> int:
    from .dgserver.main import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dg = settings.of(dg_settings.SETTINGS)
    try:
        await serve(settings, dg, stop)
    except (ValueError, ImportError) as exc:
        print(f"asr-worker dg-server: cannot start: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if (line := _start_failure("asr-worker dg-server", "DG_SERVER_", dg.host, dg.port, exc)) is None:
            raise
        print(line, file=sys.stderr)
        return 2
    return 0


def _stream(args: argparse.Namespace) -> int:
    from .tools.audio_files import AudioFileError, read_audio
    from .tools.stream import stream_calls, summary

    try:
        raw = _raw_format(args)
        audio = read_audio(args.file, raw)
        keys = _stream_keys(args, protocols.load(args.protocol).key_env)
    except (AudioFileError, ValueError) as exc:
        print(f"asr-worker stream: {exc}", file=sys.stderr)
        return 2
    if args.calls < 1 or (args.chunk_ms is not None and args.chunk_ms < 1):
        print("asr-worker stream: --calls and --chunk-ms must be at least 1", file=sys.stderr)
        return 2
    try:
        sip = _sip_options(args)
        if not 1 <= args.audiosocket_port <= 65535:
            raise ValueError("--audiosocket-port must be a port, 1-65535")
    except ValueError as exc:
        print(f"asr-worker stream: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(
            stream_calls(
                audio,
                args.url,
                protocol=args.protocol,
                calls=args.calls,
                interaction_id=args.id,
                chunk_ms=args.chunk_ms,
                speed=args.speed,
                as_json=args.json,
                keys=keys,
                tenant_id=args.tenant_id,
                sip=sip,
                audiosocket_port=args.audiosocket_port,
            )
        )
    except ValueError as exc:
        print(f"asr-worker stream: {exc}", file=sys.stderr)
        return 2
    print(summary(results), file=sys.stderr)
    return 0 if all(r.ended is not None for r in results) else 1


def _sip_options(args: argparse.Namespace) -> SipOptions:
    """`--sip-port` and `--sip-id-header`, checked as the worker checks its own."""
    from .tools.protocols.base import SipOptions
    from .transports.siprec.options import header_name

    if not 1 <= args.sip_port <= 65535:
        raise ValueError("--sip-port must be a port, 1-65535")
    try:
        return SipOptions(args.sip_port, header_name(args.sip_id_header or ""))
    except ValueError as exc:
        raise ValueError(f"--sip-id-header {exc}") from None


def _stream_keys(args: argparse.Namespace, key_env: str) -> Keys:
    """The keys `stream` sends: given, or from the environment (the route's key variable; the
    worker token for the events over SSE)."""
    from .tools.protocols.base import Keys
    from .transports.forks.vonage import MIN_SECRET_BYTES

    env = os.environ
    api_key = args.api_key or env.get(key_env) or None
    watch_key = (
        args.watch_key or (api_key if key_env == "ASR_WORKER_TOKEN" else env.get("ASR_WORKER_TOKEN")) or None
    )
    secret_text = args.client_secret or env.get("ASR_AUDIOHOOK_CLIENT_SECRET") or None
    secret = None
    if secret_text is not None:
        try:
            secret = base64.b64decode(secret_text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("--client-secret must be base64 (as ASR_AUDIOHOOK_API_KEYS holds it)") from None
    vonage_secret = args.vonage_signature_secret or None
    if vonage_secret is not None and len(vonage_secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"--vonage-signature-secret must be at least {MIN_SECRET_BYTES} characters (an HS256 key, "
            "as the worker's ASR_VONAGE_SIGNATURE_SECRETS holds it)"
        )
    return Keys(api_key, watch_key, secret, args.twilio_auth_token or None, vonage_secret)


def _transcribe(args: argparse.Namespace) -> int:
    from .tools.audio_files import AudioFileError, decode_audio
    from .tools.transcribe import transcribe_files

    settings = config.load_settings(os.environ, args, TRANSCRIBE)
    level = settings.of(logs.SETTINGS).level
    logs.configure("warning" if level == "info" else level)
    try:
        raw = _raw_format(args)
        files = [decode_audio(path, raw) for path in args.files]
    except (AudioFileError, ValueError) as exc:
        print(f"asr-worker transcribe: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(transcribe_files(files, settings, realtime=args.realtime, as_json=args.json))
    except Exception as exc:
        if (cause := _leaf(exc, (StartError, RuntimeError, ImportError, ValueError))) is None:
            raise
        print(f"asr-worker transcribe: cannot start: {cause}", file=sys.stderr)
        return 2
    for result in results:  # silence is no error, but a blank run should not look like success
        if result.ok and not result.finals:
            hint = "; is its --encoding and --sample-rate right?" if raw is not None else ""
            print(
                f"asr-worker transcribe: {result.name}: no speech heard in {result.duration_s:.1f} s{hint}",
                file=sys.stderr,
            )
    return 0 if all(r.ok for r in results) else 1


def _publish(args: argparse.Namespace) -> int:
    from .core.ids import check_id, check_optional_id
    from .core.keyterms import check_keyterms
    from .errors import BadRequest
    from .tools.audio_files import AudioFileError, read_audio

    try:
        raw = _raw_format(args)
        audio = read_audio(args.file, raw)
        interaction_id = check_id(args.interaction_id, "--interaction-id")
        tenant_id = check_optional_id(args.tenant_id, "--tenant-id")
        keyterms = check_keyterms(args.keyterm, "--keyterm")  # a ParamError is a ValueError
    except (AudioFileError, BadRequest, ValueError) as exc:
        print(f"asr-worker publish: {exc}", file=sys.stderr)
        return 2
    url = args.redis_url or os.environ.get("REDIS_URL") or RedisOptions().url
    return asyncio.run(_publish_and_follow(args, audio, url, interaction_id, tenant_id, keyterms))


async def _publish_and_follow(
    args: argparse.Namespace,
    audio: AudioFile,
    url: str,
    interaction_id: str,
    tenant_id: str | None,
    keyterms: tuple[str, ...],
) -> int:
    from redis.exceptions import RedisError

    from .bus.redis.wire import call_tag
    from .tools.publish import PublishError, follow_transcript, publish_call, transcript_end

    tag = call_tag(tenant_id, interaction_id)

    try:
        # The call's transcript stream (its tenant's, for another tenant than the default)
        after = await transcript_end(url, tag, cluster=args.cluster)  # Redis answers: fail fast if not
    except (RedisError, OSError) as exc:
        print(f"asr-worker publish: cannot use Redis: {exc}", file=sys.stderr)
        return 1
    problem, code = "", 0
    follower = None
    try:
        async with asyncio.TaskGroup() as tg:
            if args.follow:
                follower = tg.create_task(
                    follow_transcript(url, tag, sys.stdout, after=after, cluster=args.cluster)
                )
            result = await publish_call(
                audio,
                url,
                interaction_id,
                tenant_id=tenant_id,
                keyterms=keyterms,
                chunk_ms=args.chunk_ms,
                speed=args.speed,
                cluster=args.cluster,
            )
            print(
                f"published {result.interaction_id}: {result.frames} frames, "
                f"{audio.fmt.seconds(result.audio_bytes):.2f} s of audio in {result.seconds:.2f} s "
                f"(call entry {result.call_entry})",
                file=sys.stderr,
            )
    except* (PublishError, RedisError) as group:
        problem, code = str(group.exceptions[0]), 1
    except* (ValueError, OSError) as group:
        problem, code = str(group.exceptions[0]), 2
    if code:
        print(f"asr-worker publish: {problem}", file=sys.stderr)
        return code
    return 0 if follower is None or follower.result() is not None else 1
