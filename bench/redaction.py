"""Benchmark: what redaction costs a transcript, in the process's CPU time, by what it says.

    python -m bench.redaction

Every transcript of a call that redacts passes its redactor in the session core (compiled, as
the worker runs it); most hold no number and no keyword, and cost one look. The figures times
the transcripts a second a worker handles (about 2.5 a call: an interim each 0.5 s, a final
each 2 s) give the CPU redaction adds; `bench.deepgram --compare-env ASR_REDACT=pci` measures
it whole, and on a shared machine that comparison's noise is larger than what it measures.
"""

from __future__ import annotations

import argparse
import time

from asr_worker import compiled
from asr_worker.core.events import TranscriptWord
from asr_worker.core.redact import Redactor

CASES = (
    ("no number (most transcripts)", "thank you for calling how can I help you today"),
    ("a provider's tags", "my card number is [REDACTED]"),
    ("digit words (an interim)", "four one one one one one"),
    ("a card in a sentence (a final)", "my card number is 4111 1111 1111 1111 thanks"),
    ("expiry and code", "the expiry date is oh four twenty six and the code is seven three one"),
)


def words(text: str) -> tuple[TranscriptWord, ...]:
    return tuple(TranscriptWord(t, i * 0.3, i * 0.3 + 0.25, 0.9, t) for i, t in enumerate(text.split()))


def cost_us(text: str, n: int) -> float:
    """CPU microseconds a transcript, interims and finals in turn, on two channels."""
    redactor = Redactor.of(frozenset({"pci", "ssn"}))
    assert redactor is not None
    said = words(text)
    started = time.process_time()
    for i in range(n):
        redactor.event_words(i % 2, i % 4 == 3, text, said, i * 10.0, i * 10.0 + 3.0)
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transcripts", type=int, default=50_000, help="per case")
    parser.add_argument("--calls", type=int, default=500, help="calls a worker carries, for the last column")
    args = parser.parse_args()
    per_s = args.calls * 2.5
    command = f"python -m bench.redaction --transcripts {args.transcripts} --calls {args.calls}"
    print(f"{command}   ({compiled.describe()})")
    print(f"{'transcript':34}  {'us each':>8}  {'cores at ' + str(args.calls) + ' calls, all like it':>30}")
    for name, text in CASES:
        us = cost_us(text, args.transcripts)
        print(f"{name:34}  {us:8.2f}  {us * per_s / 1e6:30.4f}")


if __name__ == "__main__":
    main()
