"""The HTTP edge: error shapes, request schemas, admin auth, rate limits, JSON and WebSocket close codes."""
