"""Deepgram's live `/v1/listen` protocol, shared by the client (`providers.deepgram`) and the
server (`dgserver`): message shapes, query parameters, close codes, refusals."""
