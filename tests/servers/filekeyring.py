"""A real keyring backend that keeps secrets in a JSON file (for tests and CI machines
without a desktop keyring). Select it with PYTHON_KEYRING_BACKEND=tests.servers.filekeyring.
FileKeyring and SYNCD_TEST_KEYRING_FILE=PATH, or keyring.set_keyring(FileKeyring(path))."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    # Never chosen on its own: keyring instantiates every backend class it can see.
    priority = -1  # type: ignore[assignment]

    def __init__(self, path: Path | None = None) -> None:
        super().__init__()
        self._path = path

    @property
    def path(self) -> Path:
        return self._path or Path(os.environ["SYNCD_TEST_KEYRING_FILE"])

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\0{username}"] = password
        self.path.write_text(json.dumps(data))
        self.path.chmod(0o600)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        data.pop(f"{service}\0{username}", None)
        self.path.write_text(json.dumps(data))
