"""The HTTP API (Litestar), answer pipeline, CLI and client."""
