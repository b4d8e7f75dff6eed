"""`asr-worker dg-server`: Deepgram's live protocol served by any provider of ours, with
fault injection; the test suite's Deepgram and the benchmark's sink."""

from .faults import Faults
from .server import ConnectionRecord, DeepgramServer, HandshakeRecord

__all__ = ["ConnectionRecord", "DeepgramServer", "Faults", "HandshakeRecord"]
