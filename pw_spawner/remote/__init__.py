"""Where commands run: a local subprocess (optionally as another user), or a login node over SSH.

Every executor has the same small async interface (:class:`Executor`); schedulers and the spawner
use only that, so the SSH executor of a remote cluster drops in without changing them.
"""

from .executor import CommandResult, Executor, ExecutorError, LocalExecutor

__all__ = ["CommandResult", "Executor", "ExecutorError", "LocalExecutor"]
