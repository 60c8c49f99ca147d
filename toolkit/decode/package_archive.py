"""Reading a packed model's members safely: the manifest first, nothing unlisted, every
member bounded by its declared size while it is inflated (see :mod:`toolkit.decode.package`
for the format and the checks that follow), and the digest a publisher gives for the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path

from toolkit.utils.fileio import InputError

FORMAT = "concord-packed-model/2"         # manifest files: {name: {"sha256": hex, "size": bytes}}
OLD_FORMATS = ("concord-packed-model/1",)  # manifest files: {name: hex}; bounded by the zip's sizes
MAX_RATIO = 100           # declared size / compressed size above this is a zip bomb, not weights
SMALL_MEMBER = 1 << 20    # manifest.json and config.yaml are at most this many bytes
CHUNK = 1 << 20
REQUIRED = ("config.yaml", "model.pt", "cmvn.ark", "wp.model", "tokens.txt", "README.md")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Archive:
    """The members of a packed model, a zip file or a directory, read only on request."""

    def __init__(self, path: Path, fileobj=None):
        self.path, self.zip = path, None
        if path.is_dir():
            self.sizes = {p.name: (p.stat().st_size, None) for p in path.iterdir() if p.is_file()}
            return
        try:
            self.zip = zipfile.ZipFile(fileobj if fileobj is not None else path)
        except (OSError, zipfile.BadZipFile) as e:
            raise InputError(path, f"not a packed model (zip archive): {e}") from None
        names = [i.filename for i in self.zip.infolist()]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise InputError(path, f"member(s) stored more than once: {', '.join(doubled)}")
        self.sizes = {i.filename: (i.file_size, i.compress_size) for i in self.zip.infolist()}

    def close(self):
        if self.zip is not None:
            self.zip.close()

    def read(self, name: str, limit: int) -> bytes:
        """Member ``name``, inflated in chunks; an InputError as soon as it exceeds ``limit`` bytes."""
        size, packed = self.sizes[name]
        if size > limit:
            raise InputError(self.path, f"{name}: {size} bytes, more than the {limit} its manifest allows")
        if packed is not None and size > max(SMALL_MEMBER, MAX_RATIO * packed):
            raise InputError(self.path, f"{name}: {size} bytes compressed into {packed}: a ratio over "
                                        f"{MAX_RATIO} is a zip bomb, not a model; refused")
        chunks, total = [], 0
        with (self.zip.open(name) if self.zip is not None else open(self.path / name, "rb")) as f:
            while chunk := f.read(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise InputError(self.path, f"{name}: larger than the {limit} bytes its manifest "
                                                "declares; refused")
                chunks.append(chunk)
        return b"".join(chunks)


def _declared(path: Path, manifest: dict) -> dict[str, tuple[str, int | None]]:
    """``{name: (sha256, declared size or None)}`` from a manifest of the current or an old format."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise InputError(path, "manifest.json has no 'files' table")
    declared = {}
    for name, entry in files.items():
        if manifest["format"] == FORMAT:
            ok = isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and \
                isinstance(entry.get("size"), int) and entry["size"] >= 0
            declared[name] = (entry["sha256"], entry["size"]) if ok else None
        else:
            declared[name] = (entry, None) if isinstance(entry, str) else None
        if declared[name] is None or name == "manifest.json":
            raise InputError(path, f"manifest.json: bad entry for {name!r}")
    return declared


def read_members(path: str | os.PathLike, fileobj=None) -> dict[str, bytes]:
    """Every member of a packed model (file or dir), bounded and checked against the manifest
    (see the module doc, steps 1-3). ``fileobj``: the open package file, if the caller has it."""
    path = Path(path)
    archive = _Archive(path, fileobj)
    try:
        if "manifest.json" not in archive.sizes:
            raise InputError(path, "no manifest.json: not a Concord packed model")
        raw_manifest = archive.read("manifest.json", SMALL_MEMBER)
        try:
            manifest = json.loads(raw_manifest)
        except ValueError as e:
            raise InputError(path, f"manifest.json is not JSON: {e}") from None
        if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, *OLD_FORMATS):
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise InputError(path, f"format {found!r}, this toolkit reads {FORMAT!r} (and {OLD_FORMATS[0]!r})")
        declared = _declared(path, manifest)
        unlisted = sorted(set(archive.sizes) - set(declared) - {"manifest.json"})
        if unlisted:
            raise InputError(path, f"member(s) not listed in manifest.json: {', '.join(unlisted)}; refused")
        missing = [n for n in (*REQUIRED, *declared) if n not in archive.sizes]
        if missing:
            raise InputError(path, f"missing part(s): {', '.join(sorted(set(missing)))}")
        members = {}
        for name, (digest, size) in declared.items():
            limit = archive.sizes[name][0] if size is None else size
            if name == "config.yaml":
                limit = min(limit, SMALL_MEMBER)
            members[name] = archive.read(name, limit)
            if size is not None and len(members[name]) != size:
                raise InputError(path, f"{name}: {len(members[name])} bytes, the manifest declares {size} "
                                       "(the file was changed or truncated)")
            if sha256(members[name]) != digest:
                raise InputError(path, f"{name}: checksum mismatch (the file was changed or truncated)")
        members["manifest.json"] = raw_manifest
        return members
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as e:  # a damaged archive
        raise InputError(path, f"cannot read the packed model: {e}") from None
    finally:
        archive.close()


def package_digest(path: str | os.PathLike, fileobj=None) -> str:
    """sha256 of a package file (of its manifest.json for a packed directory), as published."""
    path = Path(path)
    h = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        f = fileobj if fileobj is not None else stack.enter_context(
            open(path / "manifest.json" if path.is_dir() else path, "rb"))
        f.seek(0)
        while chunk := f.read(CHUNK):
            h.update(chunk)
        f.seek(0)
    return h.hexdigest()


def check_digest(path: str | os.PathLike, expected: str, fileobj=None) -> None:
    """The package's :func:`package_digest` must be ``expected`` (64 hex digits)."""
    path = Path(path)
    expected = expected.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise InputError(path, f"--expect-sha256 wants 64 hex digits, got {expected!r}")
    found = package_digest(path, fileobj)
    if found != expected:
        what = "manifest.json" if path.is_dir() else "the file"
        raise InputError(path, f"sha256 of {what} is {found}, not the expected {expected}: "
                               "not the published model; refused")
