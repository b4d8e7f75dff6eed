"""The local speech engine: offline streaming Whisper (faster-whisper / CTranslate2) for the
`local` provider.

    audio -> resample.py (to 16 kHz) -> vad.py (Silero, endpointing) -> utterances
          -> scheduler.py (fair, finals first, batched) -> whisper.py (decode in threads)
          -> agreement.py (stable interim prefixes) -> provider results

`channel.py` runs one channel of a call through them, with the shared parts handed to it.
`model.py` finds, assembles and verifies the model; nothing here loads it at import time.
"""
