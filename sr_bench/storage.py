"""How sr_bench writes the files several processes share: a lock that holds on network
filesystems, writes staged to temp files and renamed in one step, and one-line errors.

**The lock** (:func:`file_lock`) is a file created with ``O_CREAT | O_EXCL`` in a hidden
``.locks/`` folder beside the file it guards (``results/.locks/records.jsonl.lock``); the folder
is removed again when no lock is left in it. The atomic create is honoured by local filesystems
and by NFSv3 and later, where ``fcntl`` locks are not always (an NFS mount without ``lockd``, or
with ``local_lock``, grants an ``fcntl`` lock on two hosts at once and nothing can tell), so
``fcntl`` is not used at all. The lock file says who holds it (host, boot, pid namespace, pid,
time, a random token) and the holder rewrites a beat counter in it every ``HEARTBEAT_S``. A
waiter takes over a lock whose holder is dead (same host: its pid is gone) or whose beat has
not changed for ``STALE_AFTER_S`` by the waiter's own clock (so clock skew between hosts does
not matter). See ``docs/records.md`` for what is supported.

**Staged writes** (:func:`commit_files`): every file's new text goes to a temp file beside it
(fsynced), and only when all are written are they renamed over their targets; a failure while
writing (disk full, read-only, quota) removes the temps and changes nothing. Symlinks are
written through: the target is replaced, the link stays.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sr_bench.errors import StorageError, UsageError, storage_error
from sr_bench.images import (
    _pid_alive,
    _umask,
    file_kind_problem,
    open_temp_beside,
)

__all__ = [
    "HEARTBEAT_S", "LOCK_DIR", "STALE_AFTER_S", "LockOwner", "LockTimeout", "StorageError", "commit_files",
    "file_kind_problem", "file_lock", "lock_holder", "lock_path", "refuse_same_file", "storage_error", "write_target",
    "write_text",
]

log = logging.getLogger("sr_bench.storage")

LOCK_DIR = ".locks"
#: the holder rewrites its beat this often (seconds)
HEARTBEAT_S = 10.0
#: a lock whose beat a waiter has not seen change for this long is taken over (seconds)
STALE_AFTER_S = 120.0


class LockTimeout(TimeoutError):
    """Another process held the lock for longer than the timeout, and is alive."""

    exit_code = 1


def write_target(path: str | os.PathLike) -> Path:
    """The file a write of ``path`` must replace: ``path`` itself, or, when it is a symlink, the file
    it points to (the link stays and the shared target gets the data). A link whose target's folder
    does not exist (an unmounted share?) is refused by name rather than written somewhere else."""
    path = Path(path)
    if not path.is_symlink():
        return path
    try:
        target = path.resolve(strict=False)
    except (RuntimeError, OSError):  # a loop: RuntimeError up to Python 3.12, OSError (ELOOP) after
        raise StorageError(f"{path}: is a symlink loop (it leads back to itself); remove it, or pass another "
                           f"path") from None
    if not target.parent.is_dir():
        raise StorageError(f"{path}: is a symlink to {target}, whose folder does not exist (an unmounted share?); "
                           f"mount it, or pass another path")
    return target


def _identity(path: Path) -> tuple[object, ...]:
    """What makes two paths one file: device and inode when it exists, else the real path. The
    real path first: ``sub/../x`` is ``x`` once a writer has made ``sub``, though ``stat`` of it
    fails while ``sub`` does not exist."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:  # not there yet (or a loop: judged by the real path, which stops at it)
        return ("path", real)
    return ("inode", st.st_dev, st.st_ino)


def refuse_same_file(paths: Sequence[tuple[str, str | os.PathLike | None]]) -> None:
    """A one-line :class:`sr_bench.errors.UsageError` when two of ``paths`` (``(option, path)``;
    None: not given) name one file, through symlinks, hard links or ``..``: writing one would
    destroy the other (a table written over the records it was made from), or wait for ever on
    its own lock."""
    seen: dict[tuple[object, ...], tuple[str, str | os.PathLike]] = {}
    for option, path in paths:
        if path is None:
            continue
        key = _identity(Path(path))
        if key in seen:
            first, where = seen[key]
            raise UsageError(f"{option} {path} is the same file as {first} {where}: writing one would destroy the "
                             f"other; pass another path for {option}")
        seen[key] = (option, path)


# --- the lock -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _machine() -> str:
    """Who can judge a pid: the host name, its boot and its pid namespace (two containers on one
    host with one hostname see different pids)."""
    parts = [socket.gethostname()]
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        with contextlib.suppress(OSError):
            parts.append(Path(source).read_text().strip() if "boot_id" in source else os.readlink(source))
    return "|".join(parts)


@dataclass
class LockOwner:
    """What a lock file says about its holder."""

    machine: str
    pid: int
    token: str
    since: str
    beat: str = "000000000"

    def text(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @property
    def host(self) -> str:
        return self.machine.split("|")[0]

    @property
    def on_this_machine(self) -> bool:
        """Whether its pid can be checked from here (same host, boot and pid namespace)."""
        return self.machine == _machine()

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"

    @classmethod
    def parse(cls, raw: bytes) -> LockOwner | None:
        try:
            data = json.loads(raw.decode())
            return cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError, RecursionError):
            return None  # being written, or not ours


def lock_path(target: str | os.PathLike) -> Path:
    """Where the lock of ``target`` lives: ``<folder>/.locks/<name>.lock`` (symlinks resolved, so
    every path to one file shares one lock)."""
    target = write_target(target)
    return target.parent / LOCK_DIR / f"{target.name}.lock"


def lock_holder(target: str | os.PathLike) -> LockOwner | None:
    """Who holds the lock of ``target`` now; None when nobody does (or the lock file is being
    written and says nothing yet)."""
    seen = _observe(lock_path(target))
    return LockOwner.parse(seen[1]) if seen is not None else None


def _observe(lock: Path) -> tuple[int, bytes] | None:
    """(inode, content) of the lock file, read through open() so that NFS revalidates it; None
    when there is no lock file."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.fstat(fd).st_ino, os.read(fd, 4096)
    finally:
        os.close(fd)


@dataclass
class _Watch:
    """A waiter's view of the current holder: what it last saw and when (its own clock)."""

    seen: tuple[int, bytes] | None = None
    since: float = 0.0

    def stale(self, now: tuple[int, bytes], stale_after: float) -> bool:
        if now != self.seen:
            self.seen, self.since = now, time.monotonic()
        owner = LockOwner.parse(now[1])
        if owner is not None and owner.machine == _machine() and owner.pid != os.getpid():
            if not _pid_alive(owner.pid):
                return True  # its holder died on this host
        return time.monotonic() - self.since > stale_after


def _create(lock: Path, owner: LockOwner) -> int | None:
    """The fd of a lock file newly created for ``owner``, or None when one exists."""
    vanished: OSError | None = None
    for _ in range(20):  # the folder may vanish between mkdir and open (another holder's cleanup)
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)  # the guarded file's folder may be new too
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666 & ~_umask())
        except FileExistsError:
            return None
        except FileNotFoundError as e:
            vanished = e
            continue
        except OSError as e:
            raise storage_error(lock, e, "create the lock") from None
        try:
            os.write(fd, owner.text())
            os.fsync(fd)  # another host reads who holds it
        except OSError as e:  # disk full, quota: the lock cannot say who holds it
            os.close(fd)
            lock.unlink(missing_ok=True)
            raise storage_error(lock, e, "write the lock") from None
        return fd
    assert vanished is not None
    raise storage_error(lock, vanished, "create the lock")


def _break(lock: Path, stale: tuple[int, bytes], stale_after: float) -> None:
    """Remove the stale lock ``stale`` (inode, content), unless it changed meanwhile. Breakers
    take turns through ``<lock>.break`` so that two of them never remove a lock taken after."""
    breaker = lock.with_name(lock.name + ".break")
    try:
        fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
    except FileExistsError:
        with contextlib.suppress(OSError):  # a breaker that died mid-break (microseconds) long ago
            if time.time() - breaker.stat().st_mtime > stale_after:
                breaker.unlink()
        return
    except OSError:
        return
    try:
        if _observe(lock) == stale:
            owner = LockOwner.parse(stale[1])
            held = f"pid {owner.pid} on {owner.machine.split('|')[0]} since {owner.since}" if owner else "no owner"
            log.warning("%s: taking over a stale lock (%s)", lock, held)
            lock.unlink(missing_ok=True)
    finally:
        os.close(fd)
        breaker.unlink(missing_ok=True)


class _Heartbeat(threading.Thread):
    """Rewrites the holder's beat counter in place, so waiters see it is alive."""

    def __init__(self, fd: int, owner: LockOwner, every: float):
        super().__init__(daemon=True, name="sr_bench-lock-heartbeat")
        self.fd, self.owner, self.every, self.stop = fd, owner, every, threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.wait(self.every):
            n += 1
            self.owner.beat = f"{n:09d}"  # fixed width: the file never shrinks under a reader
            with contextlib.suppress(OSError):
                os.pwrite(self.fd, self.owner.text(), 0)
                os.fsync(self.fd)


def _acquire(lock: Path, owner: LockOwner, timeout: float, stale_after: float) -> int:
    deadline = time.monotonic() + timeout
    watch = _Watch()
    pause = 0.005
    while True:
        fd = _create(lock, owner)
        if fd is not None:
            return fd
        seen = _observe(lock)
        if seen is not None and watch.stale(seen, stale_after):
            _break(lock, seen, stale_after)
            continue
        if time.monotonic() > deadline:
            held = LockOwner.parse(seen[1]) if seen else None
            who = f"pid {held.pid} on {held.machine.split('|')[0]} since {held.since}" if held else "another process"
            raise LockTimeout(f"{lock}: {who} has held this lock for over {timeout:.0f} s and is alive; wait for it, "
                              f"or delete the lock file if you know it is gone")
        time.sleep(pause * (0.5 + secrets.randbelow(1000) / 1000))
        pause = min(pause * 2, 0.25)


def _release(lock: Path, fd: int) -> None:
    """Close the lock file, then remove it if it is still ours (closing first: NFS would keep an
    unlinked open file as ``.nfsXXXX``, and the folder could not go)."""
    ours = os.fstat(fd).st_ino
    os.close(fd)
    now = _observe(lock)
    if now is not None and now[0] == ours:
        lock.unlink(missing_ok=True)
    else:
        log.warning("%s: this process's lock was taken over while held (a heartbeat missed for over %.0f s?); "
                    "check the file it guards with `python -m sr_bench.records verify`", lock, STALE_AFTER_S)
    with contextlib.suppress(OSError):  # the last lock out removes the folder; others recreate it
        lock.parent.rmdir()


@contextlib.contextmanager
def file_lock(target: str | os.PathLike, *, timeout: float = 600.0, stale_after: float = STALE_AFTER_S,
              heartbeat: float = HEARTBEAT_S) -> Iterator[Path]:
    """Hold the exclusive lock of ``target`` (see the module docstring); yields the lock file."""
    lock = lock_path(target)
    owner = LockOwner(_machine(), os.getpid(), secrets.token_hex(8),
                      time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    fd = _acquire(lock, owner, timeout, stale_after)
    beat = _Heartbeat(fd, owner, heartbeat)
    beat.start()
    try:
        yield lock
    finally:
        beat.stop.set()
        beat.join()
        _release(lock, fd)


# --- staged writes ---------------------------------------------------------------------------


def _stage(target: Path, text: str) -> Path:
    """``text`` in a fsynced temp file beside ``target``, named as ``images.atomic_write`` names
    its temps (so a killed writer's leftovers are cleaned by the next write)."""
    fd, tmp = open_temp_beside(target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _previous(target: Path) -> bytes | None:
    try:
        return target.read_bytes()
    except FileNotFoundError:
        return None


def commit_files(writes: Sequence[tuple[str | os.PathLike, str]]) -> list[Path]:
    """Replace each file with its text, all or none: every text is staged first; a failure there
    (disk full, read-only, quota) removes the staged temps and raises :class:`StorageError` with
    every target as it was. The renames then run in order; should one fail, the targets already
    renamed are written back with their old bytes. Returns the targets (symlinks resolved)."""
    targets = [write_target(p) for p, _ in writes]
    staged: list[Path] = []
    try:
        for target, (_, text) in zip(targets, writes, strict=True):
            try:
                staged.append(_stage(target, text))
            except OSError as e:
                if isinstance(e, StorageError | IsADirectoryError):
                    raise
                raise storage_error(target, e, "write") from None
        old = [_previous(t) if len(targets) > 1 else None for t in targets]
        for i, (tmp, target) in enumerate(zip(staged, targets, strict=True)):
            try:
                os.replace(tmp, target)
            except OSError as e:
                _restore(targets[:i], old[:i])
                raise storage_error(target, e, "replace") from None
        staged.clear()
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
    return targets


def _restore(targets: Sequence[Path], old: Sequence[bytes | None]) -> None:
    for target, data in zip(targets, old, strict=True):
        with contextlib.suppress(OSError):
            if data is None:
                target.unlink(missing_ok=True)
            else:
                commit_files([(target, data.decode("utf-8"))])


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace one file with ``text`` atomically (symlinks written through); a full disk or a
    read-only folder is one :class:`StorageError` line and the old file stays."""
    return commit_files([(path, text)])[0]
