"""The gateway: the edge every client talks to (HTTP and WebSocket), with its presence and rate limits."""
