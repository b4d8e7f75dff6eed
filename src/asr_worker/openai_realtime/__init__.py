"""OpenAI's Realtime API (transcription mode), shared by the realtime server and the openai provider."""
