"""Emptying a directory tree that a program made as hostile as it could (stdlib only: it also runs inside
the sandbox, prepended to the harness source).

Iterative and fd-relative: a tree thousands of levels deep (deeper than any path the kernel will resolve,
deeper than Python's recursion limit) is walked one directory fd at a time, going back up through "..",
so neither the path length, the recursion depth nor the open-file limit bounds it. Directories the program
made unreadable are made accessible again (everything here belongs to the caller's uid, or the caller is
root). Symlinks are removed, never followed.
"""

import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(name: str, dir_fd: int | None = None) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=dir_fd)
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def wipe_tree(path: str, max_steps: int = 10_000_000) -> bool:
    """Remove everything inside `path` (which stays). True when it is empty afterwards; False (never an
    exception) when something could not be removed or `path` is not a real directory."""
    try:
        fd = _open_dir(path)
    except OSError:
        return False
    depth = 0
    try:
        for _ in range(max_steps):
            descend = None
            try:
                names = os.listdir(fd)
            except OSError:
                os.fchmod(fd, 0o700)
                names = os.listdir(fd)
            for name in names:
                try:
                    st = os.lstat(name, dir_fd=fd)
                    if not stat.S_ISDIR(st.st_mode):
                        os.unlink(name, dir_fd=fd)
                        continue
                    os.rmdir(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError:
                    descend = name  # not empty (or not ours to remove yet): empty it first
                    break
            if descend is not None:
                child = _open_dir(descend, fd)
                os.fchmod(child, 0o700)
                os.close(fd)
                fd, depth = child, depth + 1
                continue
            if depth == 0:
                return True
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd, depth = parent, depth - 1
        return False
    except OSError:
        return False
    finally:
        os.close(fd)
