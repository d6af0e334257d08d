"""A run folder: what it holds, when a new run may use it, and its JSON-lines log.

A folder is only ever written by the run it belongs to. :func:`open_run` refuses a non-empty
folder unless the caller resumes it (its checkpoint's recipe must equal the config asked for;
a mismatch names the differing fields) or overwrites it (its sr_bench files are deleted first).
A new run writes nothing until its data and network are built (:meth:`RunFolder.begin`), and a
run that fails before its first checkpoint removes what it wrote (:meth:`RunFolder.discard`),
so a failed start never leaves a folder holding only ``config.json``.

One process owns a run folder at a time (:func:`run_lock`): a second ``train --out`` of the same
folder, even a ``--resume``, is refused with the holder's host, pid and start time, while the
first runs. The lock is :func:`sr_bench.storage.file_lock`'s, beside the folder
(``<parent>/.locks/<name>.lock``), so the folder itself holds only the run's files; a lock left
by a killed process on this machine is taken over at once (its pid is gone), one left on another
machine once its heartbeat has stopped for ``STALE_AFTER_S``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sr_bench.errors import DataError, UsageError, storage_error
from sr_bench.images import atomic_write, remove_stale_temps
from sr_bench.storage import HEARTBEAT_S, STALE_AFTER_S, LockTimeout, file_lock, lock_holder, lock_path
from sr_bench.train.checkpoint import checkpoint_config, load_checkpoint
from sr_bench.train.config import EXECUTION_FIELDS, TrainConfig, config_diff

__all__ = [
    "CHECKPOINT", "FINAL_WEIGHTS", "LOG", "PLOT", "CONFIG", "AMP_CACHE", "RUN_FILES",
    "RunFolderError", "RunFolderBusy", "RunFolder", "open_run", "run_lock", "JsonLog",
]

log = logging.getLogger("sr_bench.train")

CHECKPOINT = "checkpoint.pt"
FINAL_WEIGHTS = "final.safetensors"
LOG = "log.jsonl"
PLOT = "val_curve.png"
CONFIG = "config.json"
#: ``amp auto``'s timed choice, kept so that a resumed run uses the same precision.
AMP_CACHE = "amp.json"
RUN_FILES = (CHECKPOINT, FINAL_WEIGHTS, LOG, PLOT, CONFIG, AMP_CACHE)


class RunFolderError(FileExistsError):
    """``--out`` holds something a new run would overwrite. Exit status 2 (bad usage)."""

    exit_code = 2


class RunFolderBusy(DataError):
    """Another process is running in ``--out``. Exit status 1."""


def _new_folders(path: Path) -> list[Path]:
    """The folders from ``path`` up that do not exist yet (deepest first)."""
    missing = []
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing


@contextlib.contextmanager
def run_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold the run folder ``out`` for this process (yields the lock file), or raise
    :class:`RunFolderBusy` naming the process that holds it. A holder on this machine whose pid
    is gone is taken over at once (a warning says so); one on another machine only when its
    heartbeat has stopped, so this may wait up to ``STALE_AFTER_S`` to tell."""
    out = Path(out).expanduser().resolve()
    lock = lock_path(out)
    holder = lock_holder(out)
    wait = 0.0
    if holder is not None and not holder.on_this_machine:
        wait = STALE_AFTER_S + 2 * HEARTBEAT_S
        log.info("%s: held by %s; waiting up to %.0f s to see whether it is still alive", out, holder.describe(), wait)
    created = _new_folders(out.parent)
    held = contextlib.ExitStack()
    try:
        held.enter_context(file_lock(out, timeout=wait, stale_after=STALE_AFTER_S, heartbeat=HEARTBEAT_S))
    except LockTimeout:
        who = lock_holder(out)
        raise RunFolderBusy(
            f"--out {out} is in use by {who.describe() if who else 'another process'} (lock {lock}): one run writes "
            f"a run folder at a time; wait for it to finish or stop it, or choose another --out"
        ) from None
    try:
        with held:
            yield lock
    finally:
        for folder in created:  # a parent made only to hold the lock, when the run left it empty
            with contextlib.suppress(OSError):
                folder.rmdir()


def _listing(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.is_dir() else []


def _refuse_non_empty(out: Path, names: list[str], resume: bool) -> RunFolderError:
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    if resume:
        return RunFolderError(
            f"--resume: {out} holds {shown} but no {CHECKPOINT}, so there is no run to continue; "
            f"pass --overwrite to delete its sr_bench files and start again, or choose another --out"
        )
    return RunFolderError(
        f"{out} is not empty ({shown}): pass --resume to continue the run in it, --overwrite to delete "
        f"its sr_bench files and start again, or choose another --out"
    )


def _check_resume(path: Path, state: dict[str, Any], saved: TrainConfig, cfg: TrainConfig) -> list[str]:
    """Refuse a checkpoint whose recipe (``saved``) differs from ``cfg``; return the execution
    settings that changed (which a resume accepts)."""
    diff = config_diff(saved, cfg, ignore=EXECUTION_FIELDS)
    if diff:
        lines = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise UsageError(
            f"--resume: the recipe asked for differs from {path}'s ({lines}); use a new --out for a new recipe, "
            f"or --overwrite to replace that run"
        )
    if cfg.optim.iterations < int(state["iteration"]):
        raise UsageError(
            f"--resume: --iterations {cfg.optim.iterations} is fewer than the {state['iteration']} updates {path} "
            f"already holds; pass at least {state['iteration']}"
        )
    changed = config_diff(saved, cfg, ignore=("out", "notes"))
    return [f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()]


@dataclass
class RunFolder:
    """An output folder opened for one run (rank 0 writes; other ranks only read)."""

    out: Path
    #: the checkpoint being resumed, or None for a new run.
    state: dict[str, Any] | None
    #: messages for the log (what a resume changed, what --overwrite deleted).
    notes: list[str]
    writer: bool = True
    created: bool = False
    #: the config the resumed checkpoint was written with (None for a new run).
    saved_config: TrainConfig | None = None

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    def path(self, name: str) -> Path:
        return self.out / name

    def begin(self, cfg: TrainConfig) -> JsonLog:
        """Create the folder and write ``config.json``; the log keeps only what the resumed
        checkpoint covers (a killed run logs beyond its last checkpoint)."""
        log = JsonLog(self.out / LOG, self.writer)
        if self.writer:
            self.created = not self.out.exists()
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise storage_error(self.out, e, "create the run folder") from None
            cfg.save(self.out / CONFIG)
            log.truncate_after(int(self.state["iteration"]) if self.state is not None else None)
        return log

    def discard(self) -> None:
        """Remove what a new run wrote before its first checkpoint (a failed start)."""
        if not self.writer or self.state is not None or (self.out / CHECKPOINT).exists():
            return
        for name in RUN_FILES:
            (self.out / name).unlink(missing_ok=True)
        if self.created and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()

    def read_amp(self, device: str) -> dict[str, Any] | None:
        """The cached ``amp auto`` choice for ``device``, if this run made one."""
        try:
            cached = json.loads((self.out / AMP_CACHE).read_text())
        except (OSError, ValueError):
            return None
        return cached if isinstance(cached, dict) and cached.get("device") == device else None

    def write_amp(self, record: dict[str, Any]) -> None:
        if self.writer:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out / AMP_CACHE, lambda tmp: Path(tmp).write_text(json.dumps(record) + "\n"))


def _clear(out: Path) -> list[str]:
    """Delete the sr_bench files of a run folder (and temp files of killed writes); other files stay."""
    removed = []
    for name in RUN_FILES:
        path = out / name
        removed += [p.name for p in remove_stale_temps(path)]
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


def _refuse_data_folder(out: Path, cfg: TrainConfig) -> None:
    """A run folder is never a folder of training or validation images: its ``val_curve.png``
    would be read as one of them by the next run (and ``--overwrite`` would delete in it)."""
    for option, name in (("--data", cfg.data.dataset), ("--val-data", cfg.val.dataset)):
        folder = Path(name).expanduser()
        if folder.is_dir() and out in (folder.resolve(), (folder / "HR").resolve()):
            raise UsageError(f"--out {out} is the {option} folder of images: the run's val_curve.png would be read as "
                             f"an image of it by the next run; choose another --out, e.g. {out.parent / 'runs'}")


def open_run(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, writer: bool = True) -> RunFolder:
    """Decide what ``cfg.out`` is for this run: a resume (``resume`` and a checkpoint there), a
    new run in an empty or missing folder, or a new run after ``overwrite`` cleared it. Anything
    else raises :class:`RunFolderError`. Only the ``writer`` (rank 0) deletes files."""
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite deletes it: pass one of them")
    out = Path(cfg.out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file; give a folder (it will hold checkpoint.pt, log.jsonl, ...)")
    _refuse_data_folder(out, cfg)
    ckpt, notes = out / CHECKPOINT, []
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt)
        saved = checkpoint_config(state)
        changed = _check_resume(ckpt, state, saved, cfg)
        if changed:
            notes.append("resume: execution settings changed: " + "; ".join(changed))
        return RunFolder(out, state, notes, writer, saved_config=saved)
    if overwrite:
        removed = _clear(out) if writer and out.is_dir() else []
        if removed:
            notes.append(f"--overwrite: deleted {', '.join(removed)} in {out}")
    names = [n for n in _listing(out) if not overwrite or n in RUN_FILES]
    if names and (writer or not overwrite):
        raise _refuse_non_empty(out, names, resume)
    if resume:
        notes.append(f"--resume: no run in {out} yet; starting a new one")
    return RunFolder(out, None, notes, writer)


class JsonLog:
    """Append-only JSON-lines log, owned by rank 0."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, iteration: int | None) -> None:
        """Drop entries past ``iteration``, or everything when ``iteration`` is None."""
        if not self.enabled or not self.path.exists():
            return
        keep = []
        if iteration is not None:
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the kill
                if rec.get("iteration", 0) <= iteration:
                    keep.append(line)
        text = "".join(k + "\n" for k in keep)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        rec = {"event": event, "time": round(time.time(), 3), **fields}
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError as e:  # a line cut short by a full disk is dropped on resume (truncate_after)
            raise storage_error(self.path, e, "append to") from None
