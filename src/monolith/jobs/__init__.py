"""Asynchronous inference: durable jobs in SQLite, run on spare engine capacity, with callbacks."""
