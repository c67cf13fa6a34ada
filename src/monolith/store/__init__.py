"""Persistent state behind one interface, SQLite (the embedded default) or PostgreSQL (many replicas): the
database and its migrations, jobs, batches (the queue), files (records; content on a shared directory, written
atomically), and leases."""
