"""asr-worker: live call transcription, one streaming speech-to-text session per call."""

__version__ = "0.1.0"
