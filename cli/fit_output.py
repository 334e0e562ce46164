"""The output folder of ``scivae fit``: checks, a lock against a second fit, checkpoints, atomic publication.

Life of ``OUT`` (the ``--out`` folder) during a fit:

1. :meth:`FitOutput.check` runs before the data are read and writes nothing: it refuses an ``OUT`` that is the
   input or inside it, a file, a folder of other files, a finished fit without ``--force``, an interrupted fit
   without ``--resume`` (or ``--force``), a ``--resume`` with nothing to resume or other settings, and a place
   that cannot be written. Only a folder that carries scivae's marker file ``OUT/.scivae-output.json`` (or, from
   before the marker, a scivae lock or model) counts as scivae's: ``--resume``, ``--force`` and a replacement act on
   nothing else, so an unrelated folder that happens to hold ``checkpoints/`` or ``metrics.json`` is never
   touched.
2. Entering the ``with`` block creates ``OUT``, takes ``OUT/.scivae-fit.lock`` (a ``filelock`` lock, released
   by the system even after ``kill -9``: a second fit on the same ``OUT`` is refused while one runs) and writes the
   marker into ``OUT`` and the checkpoint folder.
   ``OUT/checkpoints/`` (or ``--checkpoint-dir``) then receives ``run.json`` (the settings) and ``last.ckpt``.
3. :meth:`FitOutput.publish` builds the results in a temporary sibling ``.OUT.XXXX.tmp`` and swaps it into place
   in one step, so ``OUT`` is the previous output or the new one, never a mix; the checkpoints go with the
   previous content.
4. On failure, whatever this fit added is removed, except a checkpoint to resume from.

Checkpoints are pickles (Lightning ``.ckpt``): they are only read from this folder, written by the user's own fit,
and loaded with ``weights_only=True``. The model folder that is shared (``OUT/model``) is safetensors + JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import typer

from scivae._atomic import replace_dir, temporary_sibling, write_text_atomic
from scivae.errors import CheckpointError, OutputError, OutputLockedError

LOCK_FILE = ".scivae-fit.lock"
CHECKPOINT_DIR = "checkpoints"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "last.ckpt"  # scivae.core.train.resume.CHECKPOINT_FILE, without importing torch here
#: Files whose presence makes a scivae output folder a finished fit.
FINISHED_MARKERS = ("metrics.json", "model/config.json")
#: The file scivae writes into every folder it creates for a fit (``OUT``, its checkpoint folder): only a folder
#: holding it is resumed, replaced or cleaned.
MARKER_FILE = ".scivae-output.json"


def write_marker(folder: Path, what: str) -> None:
    """Mark ``folder`` as written by scivae (``what``: ``"fit output"`` or ``"checkpoints"``)."""
    from scivae import __version__

    write_text_atomic(folder / MARKER_FILE, json.dumps({"written_by": "scivae", "what": what, "version": __version__}))


def is_scivae_folder(folder: Path) -> bool:
    """Whether scivae wrote ``folder``: its marker file, or (written before the marker existed) a fit's lock file or
    a scivae model's ``model/config.json``."""
    if (folder / MARKER_FILE).is_file() or (folder / LOCK_FILE).is_file():
        return True
    try:
        meta = json.loads((folder / "model" / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and "format_version" in meta and "model_type" in meta


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable(path: Path, what: str) -> None:
    """Create and delete a temporary folder where ``path`` will be made: the only honest test (root ignores modes)."""
    base = _nearest_existing(path)
    if not base.is_dir():
        raise OutputError(f"{what} {path}: {base} is a file, not a folder; choose another path")
    try:
        Path(tempfile.mkdtemp(prefix=".scivae-probe-", dir=base)).rmdir()
    except OSError as e:
        raise OutputError(f"{what} {path} cannot be written ({e.strerror or e}); choose another path") from None


class FitOutput:
    """The ``--out`` folder of one ``scivae fit`` run.

    Parameters
    ----------
    out
        The output folder.
    data
        The input (file or folder); never written.
    settings
        Everything that determines the fit (command-line values, the input's size and time); a ``--resume``
        must match the settings of the run it continues.
    resume, force
        ``--resume`` and ``--force``.
    checkpoint_dir
        ``--checkpoint-dir`` (default ``OUT/checkpoints``).
    """

    def __init__(
        self,
        out: Path,
        data: Path,
        *,
        settings: dict[str, Any] | None = None,
        resume: bool = False,
        force: bool = False,
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.out = Path(out)
        self.data = Path(data)
        self.settings = _json_ready(settings or {})
        self.resume = resume
        self.force = force
        self.custom_checkpoint_dir = checkpoint_dir is not None
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else self.out / CHECKPOINT_DIR
        self.published = False
        # the other processes of a DDP run (Lightning's children, the other nodes) re-run the command: they train
        # under rank 0's lock, with its checkpoint folder, and create, lock and write nothing
        from scivae.core.distributed import launched_rank

        self.secondary = launched_rank() > 0
        self._lock: Any = None
        self._created: Path | None = None
        self._created_checkpoint_dir: Path | None = None
        self._marked: list[Path] = []  # folders this run marked that held no marker before

    # -- state of the folder -------------------------------------------------------------------------------
    @property
    def checkpoint(self) -> Path:
        return self.checkpoint_dir / CHECKPOINT_FILE

    @property
    def resume_from(self) -> Path | None:
        """The checkpoint to continue from (``--resume``), else ``None``."""
        return self.checkpoint if self.resume else None

    def _finished(self) -> bool:
        return any((self.out / marker).exists() for marker in FINISHED_MARKERS)

    def check(self) -> None:
        """Refuse an output that cannot be used (see the module docstring); writes nothing.

        The other processes of a distributed run make the same refusals, so that a refused output stops every node
        at once instead of leaving them waiting for rank 0 until the process group times out; they skip the probe
        of writability, which creates a folder (only rank 0 writes).
        """
        out_r, data_r = self.out.resolve(), self.data.resolve()
        if out_r == data_r or out_r in data_r.parents:
            raise OutputError(f"--out {self.out} would contain or replace the input {self.data}: pass another folder")
        if data_r in out_r.parents:
            raise OutputError(f"--out {self.out} is inside the input folder {self.data}: pass a folder outside it")
        if self.out.exists():
            if not self.out.is_dir():
                raise OutputError(f"--out {self.out} is an existing file: pass a folder path")
            # only scivae's marker makes a folder ours: a foreign checkpoints/ or metrics.json does not
            if not is_scivae_folder(self.out) and any(self.out.iterdir()):
                raise OutputError(
                    f"--out {self.out} exists and is not a scivae output folder (it would be replaced): "
                    "pass a new folder"
                )
        if self.custom_checkpoint_dir and self.checkpoint_dir.is_dir():
            foreign = [self.checkpoint_dir / n for n in (CHECKPOINT_FILE, RUN_FILE)]
            if not (self.checkpoint_dir / MARKER_FILE).is_file() and any(p.exists() for p in foreign):
                raise CheckpointError(
                    f"--checkpoint-dir {self.checkpoint_dir} holds a {CHECKPOINT_FILE} or {RUN_FILE} that scivae did "
                    "not write: pass an empty or new folder"
                )
        has_checkpoint = self.checkpoint.is_file()
        if self.resume:
            if not has_checkpoint:
                raise CheckpointError(
                    f"--resume: no checkpoint in {self.checkpoint_dir} (the fit finished, never started, or stopped "
                    "before its first epoch ended): run without --resume"
                )
            if self._finished() and not self.force:
                raise OutputError(
                    f"--resume: {self.out} also holds a finished fit, which the resumed fit would replace: add --force"
                )
            self._check_settings()
        else:
            if has_checkpoint and not self.force:
                raise CheckpointError(
                    f"{self.checkpoint_dir} holds the checkpoint of an interrupted fit: add --resume to continue it, "
                    "or --force to start over"
                )
            if self._finished() and not self.force:
                raise OutputError(
                    f"--out {self.out} holds a finished fit: add --force to replace it, or choose another --out"
                )
        if self.secondary:
            return
        check_writable(self.out, "--out")
        if self.custom_checkpoint_dir:
            check_writable(self.checkpoint_dir, "--checkpoint-dir")

    def _check_settings(self) -> None:
        run_file = self.checkpoint_dir / RUN_FILE
        try:
            saved = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError):
            raise CheckpointError(
                f"--resume: {run_file} is missing or damaged, so the checkpoint's settings are unknown: start over "
                "with --force"
            ) from None
        differ = sorted(k for k in set(saved) | set(self.settings) if saved.get(k) != self.settings.get(k))
        if differ:
            shown = ", ".join(f"{k} {saved.get(k)!r} -> {self.settings.get(k)!r}" for k in differ[:3])
            raise CheckpointError(
                f"--resume: the checkpoint was written by a fit with other settings ({shown}): resume with the "
                "same data and options, or start over with --force"
            )

    # -- the fit's lifetime --------------------------------------------------------------------------------
    def __enter__(self) -> FitOutput:
        from filelock import FileLock, Timeout

        if self.secondary:
            return self
        if not self.out.exists():
            self._created = _nearest_missing(self.out)
            self.out.mkdir(parents=True)
        self._lock = FileLock(str(self.out / LOCK_FILE), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            self._lock = None
            raise OutputLockedError(
                f"another scivae fit is writing to {self.out}: wait for it to finish, or choose another --out"
            ) from None
        try:
            self.check()  # again, under the lock: another fit may have finished in between
            self._remove_stale_temporaries()
            if not self.checkpoint_dir.exists():
                self._created_checkpoint_dir = _nearest_missing(self.checkpoint_dir)
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            for folder, what in ((self.out, "fit output"), (self.checkpoint_dir, "checkpoints")):
                if not (folder / MARKER_FILE).is_file():
                    write_marker(folder, what)
                    self._marked.append(folder)
            if not self.resume:
                for name in (CHECKPOINT_FILE, RUN_FILE):
                    (self.checkpoint_dir / name).unlink(missing_ok=True)
                write_text_atomic(self.checkpoint_dir / RUN_FILE, json.dumps(self.settings, indent=2, sort_keys=True))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _remove_stale_temporaries(self) -> None:
        # left by a fit killed while publishing; nobody else writes them while we hold the lock
        for stale in self.out.parent.glob(f".{self.out.name}.*"):
            # only scivae's own temporaries: they carry the marker (an unrelated .NAME.x.tmp folder stays)
            if stale.suffix in (".tmp", ".old") and stale.is_dir() and (stale / MARKER_FILE).is_file():
                shutil.rmtree(stale, ignore_errors=True)

    def publish(self, write: Callable[[Path], None], *, keep_checkpoint: bool = False) -> None:
        """Build the results with ``write(folder)`` in a temporary sibling and swap it into place as ``OUT``.

        ``keep_checkpoint`` moves the checkpoint folder into the new ``OUT`` (a diverged fit keeps its last good
        checkpoint); otherwise the checkpoint leaves with the previous content.
        """
        if self.secondary:
            self.published = True
            return
        tmp = temporary_sibling(self.out)
        moved = False
        try:
            write_marker(tmp, "fit output")
            write(tmp)
            if keep_checkpoint and not self.custom_checkpoint_dir and self.checkpoint_dir.is_dir():
                os.replace(self.checkpoint_dir, tmp / CHECKPOINT_DIR)
                moved = True
            replace_dir(tmp, self.out)
        except BaseException:
            if moved and (tmp / CHECKPOINT_DIR).is_dir():
                os.replace(tmp / CHECKPOINT_DIR, self.checkpoint_dir)
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if self.custom_checkpoint_dir and not keep_checkpoint:
            for name in (CHECKPOINT_FILE, RUN_FILE, MARKER_FILE):  # all scivae's: the folder is left as found
                (self.checkpoint_dir / name).unlink(missing_ok=True)
        self.published = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is not None and not self.published and not self.secondary:
                self._clean_up_after_failure(exc)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _clean_up_after_failure(self, exc: BaseException | None = None) -> None:
        from scivae_cli.interrupts import Interrupted

        if self.checkpoint.is_file():
            hint = f"the last checkpoint is kept in {self.checkpoint_dir}: continue the fit with the same command and "
            if isinstance(exc, Interrupted):  # said on the command's one ``interrupted`` line
                exc.hint = hint + "--resume"
            else:
                typer.echo(hint + "--resume", err=True)
            return
        if isinstance(exc, Interrupted):
            exc.hint = "no epoch had finished, so there is no checkpoint to resume from: run the command again"
        (self.checkpoint_dir / RUN_FILE).unlink(missing_ok=True)
        (self.out / LOCK_FILE).unlink(missing_ok=True)
        for folder in self._marked:  # a folder that was empty before this run is left as it was
            (folder / MARKER_FILE).unlink(missing_ok=True)
        for created in (self._created_checkpoint_dir, self._created):
            if created is not None and created.is_dir() and not any(p.is_file() for p in created.rglob("*")):
                shutil.rmtree(created, ignore_errors=True)


def _nearest_missing(path: Path) -> Path:
    """The outermost folder that ``path.mkdir(parents=True)`` will create."""
    top = path
    for parent in path.parents:
        if parent.exists():
            break
        top = parent
    return top


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def input_identity(data: Path) -> dict[str, Any]:
    """Size and modification time of the input (a file, or every file of a folder): a changed input is
    not resumed."""
    data = Path(data)
    files = [data] if data.is_file() else sorted(p for p in data.rglob("*") if p.is_file())
    stats = [p.stat() for p in files]
    newest = max((s.st_mtime_ns for s in stats), default=0)
    return {"path": str(data.resolve()), "bytes": sum(s.st_size for s in stats), "mtime_ns": newest}


def fit_and_publish(output: FitOutput, fit: Callable[[dict[str, Any]], Any], write: Callable[[Path, Any], None]) -> Any:
    """Run ``fit(checkpoint_kwargs)`` in the locked ``OUT`` and publish ``write(folder, fit_result)`` atomically.

    ``checkpoint_kwargs`` are :func:`scivae.core.fit_module`'s ``checkpoint_dir`` and ``resume_from`` (how often
    to save is a training option, ``checkpoint_every_minutes``). A fit that diverges after at least one epoch still
    publishes its last good
    weights and report (``diverged: true``), keeps its last good checkpoint, and raises
    :class:`~scivae.errors.DivergenceError` (exit code 3).
    """
    from scivae.errors import DivergenceError

    kwargs = {"checkpoint_dir": output.checkpoint_dir, "resume_from": output.resume_from}
    with output:
        try:
            result = fit(kwargs)
        except DivergenceError as e:
            partial = e.fit_result
            epoch = partial.metrics.get("weights_epoch") if partial is not None else None
            if epoch is not None:
                output.publish(lambda tmp: write(tmp, partial), keep_checkpoint=True)
                e.append(
                    f". {output.out} holds the weights of epoch {epoch}, the last good ones, with the report; the "
                    f"last good checkpoint is in {output.checkpoint_dir}"
                )
            raise
        output.publish(lambda tmp: write(tmp, result))
    return result
