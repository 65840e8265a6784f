"""Sessions: every server a user has started (JupyterLab, a desktop, any app), while it is queued or
running and for a while after it has finished, for the sessions page.

JupyterHub forgets a server's state when it stops; :mod:`pw_spawner.sessions.store` keeps a row per
session in pw_spawner's own small database (SQLite by default, or PostgreSQL and any other database
SQLAlchemy can reach) so that finished sessions stay listed, with what they were started with.
"""
