"""asr-worker: live call transcription, one streaming speech-to-text session per call."""

import os as _os

__version__ = "0.1.0"

if _os.environ.get("ASR_INTERPRETED") == "1":  # run the compiled modules' .py sources instead
    from .compiled import prefer_sources as _prefer_sources

    _prefer_sources()
