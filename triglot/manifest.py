"""Stage manifests: what went in, what came out, and whether a stage's output is still current.

A stage writes `manifest.json` last, after its outputs, so a folder with a manifest is complete.
A rerun is skipped when the config hash and the input hashes match and the outputs are intact.
Input hashes are reused, when size and mtime match, from the stage's previous manifest and from
the manifest of the stage that wrote the input folder (so training does not re-read packed shards).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from triglot import __version__
from triglot.config import config_hash

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def digest_file(path: Path, digest: Any, chunk: int = _CHUNK) -> str:
    """Feed the file's bytes to a hashlib-style `digest` in chunks; its hex digest."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return digest_file(path, hashlib.sha256())


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST)


def fingerprint(paths: Iterable[str | os.PathLike], known: dict[str, dict] | None = None) -> list[dict]:
    """Path, size and sha256 of every file under `paths`.

    A file whose size and mtime match an entry in `known` reuses that entry's hash, so checking a
    large, unchanged input does not re-read it.
    """
    known = known or {}
    entries = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            entries.append({"path": str(root), "missing": True})
            continue
        for file in _files_under(root):
            stat = file.stat()
            prior = known.get(str(file))
            if prior and prior.get("size") == stat.st_size and prior.get("mtime_ns") == stat.st_mtime_ns:
                digest = prior["sha256"]
            else:
                digest = sha256_file(file)
            entries.append({"path": str(file), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest})
    return entries


def recorded_outputs(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    """Hashes that the stage which wrote each input folder recorded for its outputs, for `fingerprint`.

    Keyed by the path under the folder as named here (the producer may have named it otherwise),
    so a consumer (every training rank, at every start) re-reads only files whose size or mtime
    changed since, e.g., `data pack` wrote them.
    """
    known: dict[str, dict] = {}
    for root in (Path(p) for p in paths if Path(p).is_dir()):
        outputs = [e for e in (StageManifest.load(root) or {}).get("outputs", [])
                   if {"path", "size", "mtime_ns", "sha256"} <= e.keys()]
        if not outputs:
            continue
        try:  # the producer's folder: the pack (and every stage here) writes a file at its top
            base = os.path.commonpath([os.path.dirname(e["path"]) or os.curdir for e in outputs]) or os.curdir
        except ValueError:  # absolute and relative paths mixed
            continue
        for e in outputs:
            rel = os.path.relpath(e["path"], base)
            if not rel.startswith(os.pardir):
                known[str(root / rel)] = e
    return known


def code_version() -> str:
    """Package version plus the git commit of the source tree when there is one."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def _same_content(a: list[dict], b: list[dict]) -> bool:
    key = lambda e: (e["path"], e.get("sha256"), e.get("missing", False))  # noqa: E731
    return sorted(map(key, a)) == sorted(map(key, b))


class StageManifest:
    """Begin a stage with `open`, check `is_current()`, do the work, then `write(...)`."""

    def __init__(self, out_dir: Path, stage: str, config: Any, inputs: list[str]):
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.config = config
        self.config_hash = config_hash(config)
        self.input_paths = [str(p) for p in inputs]
        self.started = time.time()
        self.previous = self.load(self.out_dir)
        known = {e["path"]: e for e in (self.previous or {}).get("inputs", []) if "sha256" in e}
        self.inputs = fingerprint(self.input_paths, {**recorded_outputs(self.input_paths), **known})

    @classmethod
    def open(cls, out_dir: str | os.PathLike, stage: str, config: Any, inputs: Iterable[Any]) -> StageManifest:
        return cls(Path(out_dir), stage, config, [str(p) for p in inputs])

    @staticmethod
    def load(out_dir: str | os.PathLike) -> dict | None:
        path = Path(out_dir) / MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def is_current(self) -> bool:
        """True when the previous run had the same config and inputs, and its outputs are intact.

        The code version is recorded for lineage but does not invalidate: a new commit of triglot
        must not re-clean a corpus; `--force` reruns after a change that matters.
        """
        prev = self.previous
        if not prev or prev.get("stage") != self.stage or prev.get("config_hash") != self.config_hash:
            return False
        if not _same_content(prev.get("inputs", []), self.inputs):
            return False
        for out in prev.get("outputs", []):
            path = Path(out["path"])
            if not path.is_file() or path.stat().st_size != out.get("size"):
                return False
            if path.name == "COMPLETE" and not _checkpoint_whole(path.parent):
                return False
        return True

    def write(self, outputs: Iterable[Any] = (), counts: dict | None = None, hashed: Iterable[dict] = (),
              **extra: Any) -> dict:
        """Record outputs (files or folders) and counts; written atomically, after the outputs.

        `hashed`: entries (path, size, mtime_ns, sha256) of outputs whose writer hashed the bytes as it wrote
        them; a file still of that size and mtime is not read again.
        """
        known = {e["path"]: e for e in (self.previous or {}).get("outputs", []) if "sha256" in e}
        known.update((e["path"], e) for e in hashed)
        manifest = {
            "stage": self.stage,
            "config_hash": self.config_hash,
            "config": _plain(self.config),
            "code_version": code_version(),
            "inputs": self.inputs,
            "outputs": [e for e in fingerprint([str(p) for p in outputs], known) if not e.get("missing")],
            "counts": counts or {},
            "timings": {"started": self.started, "finished": time.time(), "seconds": time.time() - self.started},
            **extra,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(tmp, self.out_dir / MANIFEST)
        return manifest


def _checkpoint_whole(folder: Path) -> bool:
    """A training checkpoint recorded as an output still matches the sizes and checksums its marker lists."""
    from triglot.train.checkpoint import verify

    return not verify(folder)


def _plain(config: Any) -> Any:
    from triglot.config import to_container

    return to_container(config)
