"""HTTP only, around one Runtime: the app and its plugin (controllers, dependencies, exception handlers, the
API-key guard, request metrics), one controller per area, real-time answering of registry endpoints
(`realtime`), SSE framing, admission's HTTP edge, the truthful OpenAPI schema, and uvicorn with a drain."""
