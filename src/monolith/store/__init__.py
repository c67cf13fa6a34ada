"""Persistent state behind one interface: SQLite (the embedded default) or PostgreSQL (many replicas)."""
