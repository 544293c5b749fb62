"""Encryption of stored secrets with `TIDEGATE_SECRET_KEY` (Fernet: AES-128-CBC + HMAC-SHA256).

DESIGN.md's security model says credentials, kubeconfigs and sensitive outputs never reach the store
in plain text. The store therefore only accepts `Sealed` values in secret columns: a `Sealed` is
what a `SecretBox` makes, mypy refuses assigning a `str` to a secret attribute, and the column
type refuses anything but `Sealed` when the row is written.

The setting may hold several comma-separated keys for rotation: the first encrypts, all decrypt.
A box whose key lives in a file (the embedded default) re-reads the file before it seals and when a
token does not decrypt, so `tidegate secret rotate-key` can rotate under running workers.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from store.files import private_directory
from store.redaction import remember

KEY_FILE_NAME = "secret.key"
KEY_SETTING = "TIDEGATE_SECRET_KEY"


class SecretKeyError(Exception):
    """The secret key is missing, malformed, unsafe on disk, or not the one that sealed a value."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """Ciphertext of one secret (a Fernet token); its repr never shows the token."""

    token: bytes

    def __repr__(self) -> str:
        return f"Sealed(<{len(self.token)} bytes>)"


class SecretBox:
    """Seals and unseals secrets with the key(s) from `TIDEGATE_SECRET_KEY`."""

    def __init__(self, key: str, *, reload: Callable[[], str] | None = None) -> None:
        self._reload = reload
        self._key: str | None = None
        self._use(key)

    def _use(self, key: str) -> None:
        if key == self._key:
            return
        keys = _split_keys(key)
        self._fernet = MultiFernet([_fernet(part) for part in keys])
        self._key = key
        self.key_count = len(keys)
        remember(*keys)  # the key itself must never appear in anything Tidegate writes

    def refresh(self) -> None:
        """Pick up a key file rotated by another process (a box built from a setting never changes)."""
        if self._reload is not None:
            self._use(self._reload())

    @staticmethod
    def generate_key() -> str:
        """Return a new random key in the form the setting expects."""
        return Fernet.generate_key().decode("ascii")

    def seal(self, plaintext: str) -> Sealed:
        """Encrypt text (a credential, a kubeconfig) for storage, under the newest key."""
        self.refresh()
        return Sealed(self._fernet.encrypt(plaintext.encode("utf-8")))

    def rotate(self, sealed: Sealed) -> Sealed:
        """Re-encrypt a token under the first key (the value never leaves this call in plain text)."""
        try:
            return Sealed(self._fernet.rotate(sealed.token))
        except InvalidToken:
            raise SecretKeyError(f"cannot re-encrypt a stored secret: none of the keys in {KEY_SETTING} "
                                 "decrypts it (list the key it was sealed with after the new one)") from None

    def opens(self, sealed: Sealed) -> bool:
        """Whether the first key alone decrypts `sealed` (a rotation is over when every token does)."""
        try:
            _fernet(_split_keys(self._key or "")[0]).decrypt(sealed.token)
        except InvalidToken:
            return False
        return True

    def unseal(self, sealed: Sealed) -> str:
        """Decrypt a stored secret, or explain that the key is not the one that sealed it."""
        try:
            return self._fernet.decrypt(sealed.token).decode("utf-8")
        except InvalidToken:
            pass
        try:
            self.refresh()
            return self._fernet.decrypt(sealed.token).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                f"cannot decrypt a stored secret: {KEY_SETTING} is not the key it was encrypted with "
                "(restore the previous key, or list it after the new one, comma-separated, to rotate)"
            ) from None

    def unseal_secret(self, sealed: Sealed) -> str:
        """Decrypt a credential (a token, a key, a webhook secret) and register it for redaction,
        so that it is masked in everything this process writes afterwards."""
        value = self.unseal(sealed)
        remember(value)
        return value

    def seal_json(self, value: Any) -> Sealed:
        """Encrypt a JSON-serialisable value (a stage's outputs) for storage."""
        return self.seal(json.dumps(value, sort_keys=True, separators=(",", ":")))

    def unseal_json(self, sealed: Sealed) -> Any:
        """Decrypt a value sealed by `seal_json`."""
        return json.loads(self.unseal(sealed))


def load_or_create_key(data_dir: Path) -> str:
    """Return the key stored in `<data_dir>/secret.key`, generating it (mode 0600) on first use.

    Used by the embedded default when `TIDEGATE_SECRET_KEY` is not set. The file is written under a
    temporary name created 0600 and then hard-linked into place, so it is never readable by others,
    never seen half-written, and two processes starting together agree on one key.
    """
    private_directory(data_dir)
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        _publish_new_key(path)
    return read_key_file(path)


def key_file_box(data_dir: Path) -> SecretBox:
    """The box of the embedded default: its key file is created on first use and re-read when it
    changes, so a rotation by `tidegate secret rotate-key` reaches this process without a restart."""
    path = data_dir / KEY_FILE_NAME
    return SecretBox(load_or_create_key(data_dir), reload=lambda: read_key_file(path))


def _private_temporary(path: Path, content: str) -> Path:
    """Write `content` to a new 0600 file beside `path` (fsynced) and return its name."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (content + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return temporary


def _publish_new_key(path: Path) -> None:
    """Write a fresh key next to `path` and link it into place unless another process won."""
    temporary = _private_temporary(path, SecretBox.generate_key())
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def replace_key_file(path: Path, key: str) -> None:
    """Atomically replace the key file's content (rename over it): readers see the old or the new."""
    SecretBox(key)
    os.replace(_private_temporary(path, key), path)


def read_key_file(path: Path) -> str:
    """Read a key file, refusing one that other users could read (as ssh does with private keys)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretKeyError(f"{path} is accessible by other users (mode {mode:04o}); run: chmod 600 {path}")
    key = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        SecretBox(key)
    except SecretKeyError:
        raise SecretKeyError(f"{path} does not hold a valid {KEY_SETTING}") from None
    return key


def _split_keys(key: str) -> list[str]:
    """Split the setting into its keys; an empty setting is an error, not a silent no-op."""
    parts = [part.strip() for part in key.split(",") if part.strip()]
    if not parts:
        raise SecretKeyError(f"{KEY_SETTING} is empty")
    return parts


def _fernet(key: str) -> Fernet:
    """Build one Fernet, turning the library's ValueError into a message about the setting."""
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise SecretKeyError(
            f"{KEY_SETTING} is not a valid key: expected 32 url-safe base64-encoded bytes "
            "(generate one with: python -c 'from store import SecretBox; print(SecretBox.generate_key())')"
        ) from None
