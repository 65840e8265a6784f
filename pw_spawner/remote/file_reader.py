"""Reading a small file a job wrote, as the job's account: the program behind Executor.read_file.

It runs on the host that has the file, as ``python3 -I -S -c <this file's text> PATH MAX`` through
the executor (so ``sudo -u`` or the SSH login applies), and in the hub's own process where the hub
may open the file itself (:func:`read_limited`). The file, and the directories above it, may be the
work of a hostile user: it reads nothing but a regular file that the job's account owns, and never
more than MAX + 1 bytes of it. Standard library only, for any python3 from 3.6 on (a login node's
may be old). ``-I`` ignores PYTHON* variables and the user's site directory (the user could put code
there), ``-S`` skips importing site altogether.
"""

import errno
import os
import pwd
import stat
import sys

#: Exit statuses of the program.
MISSING, REFUSED, FAILED = 10, 11, 12


class Missing(Exception):
    """The file does not exist (yet)."""


class Refused(Exception):
    """The file is not one to read; the message says why."""


class Unreadable(Exception):
    """The file could not be opened for another reason."""


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "unknown type"


def _account(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def read_limited(path, limit, uid):
    """At most ``limit`` bytes of ``path``, a regular file owned by ``uid``; else Missing or Refused."""
    try:
        # O_NOFOLLOW: a symlink (to /dev/zero, to a file only this account may read) fails with ELOOP
        #   instead of being followed.
        # O_NONBLOCK: a FIFO opens at once instead of waiting for a writer that never comes.
        # O_NOCTTY: a terminal device never becomes this process's controlling terminal.
        # O_CLOEXEC: no program started from here inherits the descriptor.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise Missing(path) from None
        if exc.errno == errno.ELOOP:
            try:
                link = stat.S_ISLNK(os.lstat(path).st_mode)
            except OSError:
                link = False
            raise Refused("is a symbolic link" if link else "has too many levels of symbolic links") from None
        if exc.errno == errno.ENXIO:
            raise Refused("is not a regular file (socket or device)") from None
        raise Unreadable(exc.strerror or str(exc)) from None
    try:
        # Judge the open descriptor, not the path: the path may name something else by now.
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise Refused(f"is not a regular file ({_kind(opened.st_mode)})")
        if opened.st_uid != uid:
            raise Refused(f"is owned by uid {opened.st_uid}, not by {_account(uid)}")
        if opened.st_size > limit:
            raise Refused(f"is larger than {limit} bytes")
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > limit:
            raise Refused(f"is larger than {limit} bytes")  # it grew after the fstat
        return data
    finally:
        os.close(fd)


def main(argv):
    try:
        data = read_limited(argv[1], int(argv[2]), os.geteuid())
    except Missing:
        return MISSING
    except Refused as exc:
        sys.stderr.write(f"{exc}\n")
        return REFUSED
    except Unreadable as exc:
        sys.stderr.write(f"{exc}\n")
        return FAILED
    sys.stdout.buffer.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
