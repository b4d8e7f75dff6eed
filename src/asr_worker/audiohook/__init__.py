"""Genesys Cloud AudioHook v2, as data: the messages both sides speak (`protocol`), the HTTP
message signature on the upgrade request (`signature`, over the structured fields of `sfv`).

Pure: no sockets, no clock of its own. The transport (`transports.audiohook`) serves the
dialogue; tests and tools can build and read the same messages.
"""
