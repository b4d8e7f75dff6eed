"""Media forks of the open PBXs and the other voice platforms, each a route of its own.

    messages.py            what a fork says, as typed values; the parsers' shared pieces (pure)
    l16_socket.py          a metadata text frame, then raw audio: the socket those forks share
    freeswitch.py          /v1/freeswitch: mod_audio_fork and mod_audio_stream
    freeswitch_messages.py their metadata and text frames (pure)
    jambonz.py             /v1/jambonz: jambonz's listen verb
    jambonz_messages.py    its metadata and dtmf frames (pure)
    jambonz_stt.py         /v1/jambonz/transcribe: the worker as a jambonz custom speech vendor
    jambonz_stt_messages.py that vendor API's messages, both ways (pure)
    vonage.py              /v1/vonage: Vonage Voice API WebSockets, their signed upgrade
    vonage_messages.py     websocket:connected and Vonage's events (pure)
    telnyx.py              /v1/telnyx: Telnyx Media Streaming, on the shared telephony handle
    telnyx_messages.py     its messages (pure)
    plivo.py               /v1/plivo: Plivo Audio Streaming, on the shared telephony handle
    plivo_messages.py      its messages (pure)
    signalwire.py          /v1/signalwire: SignalWire's cXML <Stream>, on the shared telephony handle
    signalwire_messages.py its messages, bare or in their documented envelope (pure)
    audiosocket.py         Asterisk AudioSocket on a TCP port of its own (ASR_AUDIOSOCKET_PORT)
    audiosocket_messages.py its messages, both ways (pure)
    asterisk.py            /v1/asterisk: Asterisk's WebSocket channel driver (chan_websocket)
    asterisk_messages.py   its control messages, plain text or JSON (pure)

Each platform is one small module with a pure `*_messages.py` parser beside it, on the shared
L16 socket or, for the platforms shaped like Twilio's Media Streams, on the shared telephony
handle (`transports/telephony.py`); `routes` gathers their routes for the worker.
"""

from __future__ import annotations

from ...http.auth import Route
from ..host import CallHost
from . import asterisk, freeswitch, jambonz, jambonz_stt, plivo, signalwire, telnyx, vonage


def routes(host: CallHost, vonage_options: vonage.VonageOptions) -> list[Route]:
    """Every fork's route, each declaring its own access."""
    return [
        *freeswitch.routes(host),
        *jambonz.routes(host),
        *jambonz_stt.routes(host),
        *vonage.routes(host, vonage_options),
        *telnyx.routes(host),
        *plivo.routes(host),
        *signalwire.routes(host),
        *asterisk.routes(host),
    ]
