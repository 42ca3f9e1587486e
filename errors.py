"""User-facing errors shared by every stage.

Every error a user can cause (bad settings, bad data, a failing external program) is a
:class:`ScalebridgeError` whose message is one line that says what is wrong and where.
The CLI prints that line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations

import errno
import signal


class ScalebridgeError(Exception):
    """Base class: the message is meant for the user, one line, naming file/key/frame."""


class SettingsError(ScalebridgeError):
    """A settings file or object is invalid (wrong type, unknown key, missing file)."""


class DataError(ScalebridgeError):
    """Input data is invalid (missing forces, NaN, unknown species, ...)."""


class ArtifactError(ScalebridgeError):
    """An artifact is missing, incomplete, of the wrong kind or of a newer schema."""


class ExternalProgramError(ScalebridgeError):
    """An external program (dp, lmp, mpiexec) failed; the message quotes its error."""


class OutOfRangeError(ScalebridgeError):
    """A model was asked for a point outside the range it was trained on."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived while a chain or command ran.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that a stage's ``except Exception``
    never swallows it: the stage's programs are stopped, its partial work removed and the
    interruption recorded on the way out. ``signum`` is the signal; ``node`` the stage
    that was running, if any.
    """

    def __init__(self, signum: int, node: str | None = None) -> None:
        self.signum = int(signum)
        self.node = node
        self.signame = signal.Signals(self.signum).name
        where = f"stage {node} " if node else ""
        super().__init__(f"{where}interrupted by {self.signame}")

    def __reduce__(self):  # pickles across process pools
        return (type(self), (self.signum, self.node))


#: OSError numbers that mean the file system refused: read-only, full, over quota or
#: file size limit (``cannot write``), no permission (``cannot access``).
WRITE_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
ACCESS_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


def os_error_line(exc: BaseException) -> str | None:
    """``"cannot write /run/.lock: Read-only file system"``: one line for an OSError
    that says the file system refused, naming the path; None for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS | ACCESS_ERRNOS:
        return None
    what = "cannot access" if exc.errno in ACCESS_ERRNOS else "cannot write"
    where = exc.filename if exc.filename is not None else "a file"
    return f"{what} {where}: {exc.strerror}"
