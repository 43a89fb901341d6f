"""The network-zoo tests run with a torch hub cache that is a fresh temporary folder and
with downloads switched off (the cases themselves are in ``zoo_cases.py``)."""

from __future__ import annotations

import pytest

import wsol.models.weights as weights_mod


class DownloadAttempted(OSError):
    pass


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """``TORCH_HOME`` in a temporary folder (an empty cache) and no downloads: the
    download function records its calls and raises as it would without network."""
    calls: list[tuple[str, str]] = []

    def no_download(url, dst):
        calls.append((url, str(dst)))
        raise DownloadAttempted(f"no network in the tests ({url})")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(weights_mod, "_download", no_download)
    return calls
