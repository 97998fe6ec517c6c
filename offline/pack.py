"""The wheels an offline GPU node needs, in pieces small enough to carry, and their joining there.

Here (a machine that reaches the package index):

    python offline/pack.py download OUT [--python-version 3.12] [--piece-mib 64] [--have FREEZE.txt]

resolves what ``pip install -e ".[dev]"`` needs on that node (its Python version, manylinux x86_64), without torch
and torchvision (the node has its own: a placeholder of each stands in while resolving, so none of their CUDA
wheels is fetched), downloads those wheels into OUT (setuptools too, to build the project there), leaves out the
packages named in ``--have`` (the node's ``pip freeze``), and cuts every file over ``--piece-mib`` into pieces
``FILE.part-000``, ``FILE.part-001``, ... listed with their SHA-256 in ``OUT/manifest.json``.

There (no package index; stdlib only):

    python3 offline/pack.py join OUT        # the wheels whole again, each checked against the manifest
    offline/install.sh OUT                  # join, then a venv on the node's torch, then the project

Nothing here imports the project, so the node's bare Python runs it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "manifest.json"
#: the node's own: never downloaded (placeholders while resolving), nor their CUDA libraries
NODE_OWN = ("torch", "torchvision")
PLACEHOLDER = "9999"      # their placeholders' version: above any real one, so the resolver takes them
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def _name(text: str) -> str:
    """A distribution name in its normal form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", text).lower()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split(folder: Path, piece_bytes: int) -> dict:
    """Cut every file of ``folder`` over ``piece_bytes`` into numbered pieces (the file removed) and write the
    manifest: per file, its size, SHA-256 and pieces (none for a file kept whole)."""
    manifest: dict = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST):
        entry = {"size": path.stat().st_size, "sha256": _sha256(path), "pieces": []}
        if entry["size"] > piece_bytes:
            with path.open("rb") as f:
                for i, chunk in enumerate(iter(lambda: f.read(piece_bytes), b"")):
                    piece = folder / f"{path.name}.part-{i:03d}"
                    piece.write_bytes(chunk)
                    entry["pieces"].append(piece.name)
            path.unlink()
        manifest[path.name] = entry
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def join(folder: Path) -> list[str]:
    """Every file of the manifest whole again in ``folder`` (its pieces removed), each checked against its size
    and SHA-256; a missing piece or a mismatch stops with the file's name. Returns the files."""
    manifest = json.loads((folder / MANIFEST).read_text())
    for name, entry in manifest.items():
        path = folder / name
        if entry["pieces"]:
            missing = [p for p in entry["pieces"] if not (folder / p).exists()]
            if missing and not path.exists():
                raise SystemExit(f"pack: {name}: piece(s) missing: {', '.join(missing)} (copy every piece of it)")
            if not missing:   # (with pieces missing and the wheel there, it was joined before)
                partial = path.with_name(path.name + ".joining")
                with partial.open("wb") as out:
                    for piece in entry["pieces"]:
                        out.write((folder / piece).read_bytes())
                partial.replace(path)
        if not path.exists():
            raise SystemExit(f"pack: {name} is missing from {folder}")
        if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            raise SystemExit(f"pack: {name} does not match the manifest (size or SHA-256): copy it, or its pieces, "
                             "again")
        for piece in entry["pieces"]:
            (folder / piece).unlink(missing_ok=True)
    return sorted(manifest)


def _placeholders(folder: Path) -> None:
    """Wheels of torch and torchvision without content, at a version above any real one."""
    for name in NODE_OWN:
        info = f"{name}-{PLACEHOLDER}.dist-info"
        with zipfile.ZipFile(folder / f"{name}-{PLACEHOLDER}-py3-none-any.whl", "w") as z:
            z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {PLACEHOLDER}\n")
            z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: offline/pack.py\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
            z.writestr(f"{info}/RECORD", "")


def resolve(python_version: str, extras: str, have: set[str]) -> list[str]:
    """``name==version`` of every wheel the node needs beyond torch, torchvision and ``have``, resolved by pip
    for that Python and platform within the project's tested versions (constraints.txt)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _placeholders(folder)
        pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#") and not re.match(
                    r"(torch|torchvision|triton|nvidia-|cuda-)", line.split("==")[0].strip().lower())]
        (folder / "constraints.txt").write_text("\n".join(pins) + "\n")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--target", str(folder / "target"), "--only-binary=:all:", "--implementation", "cp",
                   "--python-version", python_version, *(f"--platform={p}" for p in PLATFORMS),
                   "--find-links", str(folder), "--report", str(folder / "report.json"),
                   f"{ROOT}[{extras}]", "setuptools"]
        # the constraints are the project's (torch's removed); a machine-wide constraint file is not taken
        env = {**os.environ, "PIP_CONSTRAINT": str(folder / "constraints.txt")}
        subprocess.run(command, check=True, env=env)
        report = json.loads((folder / "report.json").read_text())
    out = []
    for item in report["install"]:
        meta = item["metadata"]
        name = _name(meta["name"])
        if name in NODE_OWN or name in have or "dir_info" in item["download_info"]:   # torch, the project
            continue
        out.append(f"{meta['name']}=={meta['version']}")
    return sorted(out, key=str.lower)


def download(out: Path, python_version: str, piece_mib: float, extras: str, have: set[str]) -> None:
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    wanted = resolve(python_version, extras, have)
    print(f"pack: {len(wanted)} wheels for Python {python_version} (torch and torchvision: the node's)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--implementation", "cp", "--python-version", python_version,
                    *(f"--platform={p}" for p in PLATFORMS), "-d", str(out), *wanted], check=True,
                   env={**os.environ, "PIP_CONSTRAINT": ""})
    manifest = split(out, int(piece_mib * 2 ** 20))
    total = sum(e["size"] for e in manifest.values())
    pieces = sum(max(1, len(e["pieces"])) for e in manifest.values())
    cut = [n for n, e in manifest.items() if e["pieces"]]
    print(f"pack: {len(manifest)} wheels, {total / 2 ** 20:.0f} MiB in {pieces} files of at most {piece_mib:g} MiB "
          f"({len(cut)} cut: {', '.join(cut) or 'none'}) in {out}, {time.monotonic() - t0:.0f} s; there: "
          f"offline/install.sh {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="offline/pack.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="resolve and download the node's wheels, cut into pieces (here)")
    d.add_argument("out", type=Path, help="the folder to fill (created)")
    d.add_argument("--python-version", default="3.12", help="the node's Python (default 3.12)")
    d.add_argument("--piece-mib", type=float, default=64, help="largest file to carry, MiB (default 64)")
    d.add_argument("--extras", default="dev", help="the project's extras to install there (default dev)")
    d.add_argument("--have", type=Path, help="the node's `pip freeze`: those packages are not downloaded")
    j = sub.add_parser("join", help="put the pieces together and check every wheel (there)")
    j.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "join":
        files = join(args.folder)
        print(f"pack: {len(files)} wheels whole and checked in {args.folder}")
        return 0
    have = set()
    if args.have:
        have = {_name(re.split(r"[=<>@ ]", line.strip())[0]) for line in args.have.read_text().splitlines()
                if line.strip() and not line.startswith(("#", "-e"))}
    download(args.out, args.python_version, args.piece_mib, args.extras, have)
    return 0


if __name__ == "__main__":
    sys.exit(main())
