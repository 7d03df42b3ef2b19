"""The recorder's public API is what its ``__init__`` exports."""

import recorder


def test_every_public_name_imports():
    for name in recorder.__all__:
        assert getattr(recorder, name) is not None, name


def test_errors_share_one_root():
    for name in ("CorruptFileError", "DiskFullError", "ProfileError", "SessionError", "SourceError"):
        assert issubclass(getattr(recorder, name), recorder.RecorderError)
    assert issubclass(recorder.DiskFullError, OSError)
    assert issubclass(recorder.ProfileError, ValueError)
