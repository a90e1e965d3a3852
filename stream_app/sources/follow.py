"""Tail a growing log file like ``tail -F``, with a read position that survives restarts.

Why: a PBX log is rotated under the reader (renamed and recreated, or copied and truncated)
and the connector itself restarts; lines must be neither lost nor repeated across both. So
the reader hands out complete lines in batches, each with the position after it, and the
position on disk moves only when the caller commits it, after the broker has the lines.

- Rotation (the name now points at another file): the old file is read to its end first,
  and left only once the writer has moved on (the new file has content), because a writer
  keeps appending to the renamed file until it reopens the name. A last line without a
  newline in a finished file is handed out as it is: nothing more will complete it.
- Truncation (``copytruncate``): a file shorter than the position, or whose first line
  changed, is read again from its start. (Lines written between the copy and the truncation
  are only in the copy; ``tail -F`` loses them too.)
- Restart: the state file holds the inode, the offset, the line count and a fingerprint of
  the first line. The same file resumes at the offset; a file rotated meanwhile is found by
  its inode next to the name and finished first; a replaced or truncated one starts over.
  Two rotations between reads lose the middle file, as with ``tail -F``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 4096  # a first line longer than this is identified by its start
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading stands: always at the start of a line of one file."""

    inode: int
    offset: int  # bytes consumed
    line: int  # lines consumed
    fingerprint: str  # identifies the file by its first line; "" until it has one


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based, in its file
    text: str  # without the line ending; bytes that are not UTF-8 are replaced


@dataclass(frozen=True, slots=True)
class Batch:
    """New lines, and the position to commit once they are delivered."""

    source: str  # the file's name (a rotated file's former name, marked "(rotated)")
    lines: tuple[Line, ...]
    position: Position


def fingerprint(fd: int) -> str:
    """Hash of the file's first line (or first FINGERPRINT_BYTES), "" while it has none."""
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    end = head.find(b"\n")
    if end >= 0:
        head = head[: end + 1]
    elif len(head) < FINGERPRINT_BYTES:
        return ""
    return f"{len(head)}:{hashlib.sha256(head).hexdigest()[:32]}"


class Follower:
    """Follow ``path``; ``poll_once`` returns the next batch, ``commit`` saves a position.

    With ``state_file`` the committed position (and the caller's ``extra`` data, see
    ``saved``) is kept on disk, written atomically; without it, nothing is persisted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        state_file: str | os.PathLike[str] | None = None,
        *,
        max_batch_bytes: int = 1 << 20,
    ) -> None:
        self.path = os.path.abspath(path)
        self.state_file = None if state_file is None else os.fspath(state_file)
        self.max_batch_bytes = max_batch_bytes
        self.saved: dict[str, object] | None = None  # the `extra` of the last commit
        self._file: BinaryIO | None = None
        self._source = self.path
        self._inode = 0
        self._offset = 0
        self._line = 0
        self._fingerprint = ""
        self._rotated = False  # the open file is no longer the one at `path`
        self._restore()

    @property
    def position(self) -> Position:
        """The position after the last batch handed out (committed or not)."""
        return Position(self._inode, self._offset, self._line, self._fingerprint)

    # -- reading ----------------------------------------------------------------------------

    def poll_once(self) -> Batch | None:
        """The complete lines written since the last call, or None when there are none yet."""
        if self._file is None and not self._open_path():
            return None
        if not self._rotated:
            if self._elsewhere():
                self._rotated = True
                self._source = f"{self._source} (rotated)"
                log.info("%s was rotated: finishing the old file first", self.path)
            else:
                self._check_truncation()
        batch = self._read(final=False)
        if batch is not None:
            return batch
        if not self._rotated or not self._writer_moved_on():
            return None
        batch = self._read(final=True)  # the writer is gone: this file is complete
        if batch is not None:
            return batch
        self._close()
        if not self._open_path():
            return None
        return self._read(final=False)

    def _read(self, *, final: bool) -> Batch | None:
        assert self._file is not None
        data = os.pread(self._file.fileno(), self.max_batch_bytes, self._offset)
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) == self.max_batch_bytes:
            end = len(data)  # one line longer than a batch: hand it out in pieces
        elif final and len(data) < self.max_batch_bytes:
            end = len(data)
        if end == 0:
            return None
        chunk = data[:end]
        parts = chunk.split(b"\n")
        if chunk.endswith(b"\n"):
            parts.pop()  # the empty remainder after the last newline
        lines = []
        for raw in parts:
            self._line += 1
            lines.append(Line(self._line, raw.removesuffix(b"\r").decode("utf-8", "replace")))
        self._offset += end
        if not self._fingerprint:
            self._fingerprint = fingerprint(self._file.fileno())
        return Batch(self._source, tuple(lines), self.position)

    def _check_truncation(self) -> None:
        assert self._file is not None
        fd = self._file.fileno()
        if self._offset == 0:
            return
        if os.fstat(fd).st_size < self._offset or fingerprint(fd) != self._fingerprint:
            log.warning("%s was truncated or replaced: reading it from the start", self.path)
            self._offset = self._line = 0
            self._fingerprint = ""

    def _elsewhere(self) -> bool:
        """The name now points at another file (or at none)."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return True

    def _writer_moved_on(self) -> bool:
        """A new file with content sits at the name: nothing more goes to the old one."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return st.st_ino != self._inode and st.st_size > 0

    def _open_path(self) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            return False
        self._adopt(handle, self.path, Position(os.fstat(handle.fileno()).st_ino, 0, 0, ""))
        return True

    def _adopt(self, handle: BinaryIO, source: str, at: Position) -> None:
        self._close()
        self._file = handle
        self._source = source
        self._inode, self._offset, self._line, self._fingerprint = (
            at.inode,
            at.offset,
            at.line,
            at.fingerprint,
        )
        self._rotated = source != self.path

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Release the open file (the committed position stays on disk)."""
        self._close()

    # -- the position on disk ---------------------------------------------------------------

    def commit(self, position: Position, extra: Mapping[str, object] | None = None) -> None:
        """Save ``position`` (of a delivered batch) and ``extra``: write a temp file, fsync,
        then rename it over the state file, so a crash leaves the old state or the new one."""
        self.saved = None if extra is None else dict(extra)
        if self.state_file is None:
            return
        state = {
            "version": STATE_VERSION,
            "path": self.path,
            "inode": position.inode,
            "offset": position.offset,
            "line": position.line,
            "fingerprint": position.fingerprint,
            "extra": self.saved,
        }
        folder = os.path.dirname(os.path.abspath(self.state_file))
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(
            dir=folder, prefix=os.path.basename(self.state_file) + ".", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(state, separators=(",", ":")).encode())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.state_file)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise

    def _load_state(self) -> Position | None:
        if self.state_file is None:
            return None
        try:
            with open(self.state_file, "rb") as handle:
                state = json.loads(handle.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"state file {self.state_file}: unreadable: {exc}") from None
        fields = ("inode", "offset", "line")
        if (
            not isinstance(state, dict)
            or state.get("version") != STATE_VERSION
            or not all(isinstance(state.get(name), int) for name in fields)
            or not isinstance(state.get("fingerprint"), str)
            or not (state.get("extra") is None or isinstance(state.get("extra"), dict))
        ):
            raise ValueError(f"state file {self.state_file}: not a follow position")
        if state.get("path") != self.path:
            raise ValueError(
                f"state file {self.state_file} follows {state.get('path')!r}, not {self.path!r}"
            )
        self.saved = state["extra"]
        return Position(state["inode"], state["offset"], state["line"], state["fingerprint"])

    def _restore(self) -> None:
        """Resume at the committed position: in the same file, or in the rotated one."""
        saved = self._load_state()
        if saved is None:
            return
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            handle = None
        if handle is not None and os.fstat(handle.fileno()).st_ino == saved.inode:
            if self._resumable(handle, saved):
                self._adopt(handle, self.path, saved)
            else:
                log.warning("%s was truncated or replaced: reading it from the start", self.path)
                self._adopt(handle, self.path, Position(saved.inode, 0, 0, ""))
            return
        if handle is not None:
            handle.close()
        rotated = self._find_rotated(saved)
        if rotated is not None:
            name, old = rotated
            log.info("%s was rotated while stopped: finishing %s first", self.path, name)
            self._adopt(old, f"{name} (rotated)", saved)
        elif saved.offset > 0:
            log.warning(
                "the file of the saved position is gone: reading %s from the start", self.path
            )

    @staticmethod
    def _resumable(handle: BinaryIO, saved: Position) -> bool:
        fd = handle.fileno()
        if saved.offset == 0:
            return True
        return os.fstat(fd).st_size >= saved.offset and fingerprint(fd) == saved.fingerprint

    def _find_rotated(self, saved: Position) -> tuple[str, BinaryIO] | None:
        """The saved file under another name next to ``path`` (same inode and first line)."""
        if saved.offset == 0:
            return None
        folder = os.path.dirname(self.path)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return None
        for entry in entries:
            if entry.path == self.path or entry.inode() != saved.inode:
                continue
            try:
                handle = open(entry.path, "rb")  # noqa: SIM115 - kept open across polls
            except OSError:
                continue
            if self._resumable(handle, saved):
                return entry.path, handle
            handle.close()
        return None
