"""SIPREC (RFC 7866) and plain RTP in: enterprise SBCs' and PBXs' recording forks, and
Asterisk ARI's externalMedia, as calls of the worker.

    options.py          ASR_SIPREC_* settings
    sip.py, body.py     SIP messages and the INVITE's multipart body (pure)
    sdp.py              SDP offer/answer (pure)
    metadata.py         RFC 7865 recording metadata, defused, and the streams' roles (pure)
    dialog.py           one recorded session's SIP dialog: state, retransmissions, timers (pure)
    rtp.py              RTP packets, reordering, loss, SSRC changes, RFC 4733 digits (pure)
    media.py            RTP ports and sockets; a call's streams fed to its source
    listeners.py        SIP over UDP, TCP and TLS: the messages read, the peer to answer
    server.py           the recording server: INVITEs to calls, in-dialog requests, timers
    external_media.py   POST/DELETE /v1/rtp/{interaction_id} for Asterisk externalMedia
    stats.py            metrics

`SiprecServer(host, options, bind_host)`, with `routes(host, server)` for the HTTP side;
`start(tg)` once the worker's task group runs, `close()` when it drains.
"""

from __future__ import annotations

from .external_media import routes
from .options import SETTINGS, SiprecOptions
from .server import SiprecServer

__all__ = ["SETTINGS", "SiprecOptions", "SiprecServer", "routes"]
