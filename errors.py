"""User-facing errors shared by every stage.

Every error a user can cause (bad settings, bad data, a failing external program) is a
:class:`ScalebridgeError` whose message is one line that says what is wrong and where.
The CLI prints that line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


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
