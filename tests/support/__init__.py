"""Helpers shared by the test suite (real daemons started on 127.0.0.1)."""
