#!/usr/bin/env python3
"""Provenance for generated docs and keys for result caches, shared by every script in tools/ and
bench/ that writes a table into docs/.

A generated table says which code made it and which ONNX Runtime checked it: the git commit (with
"-dirty" when tracked files differ from it) and the onnxruntime-node version from
node_modules/onnxruntime-node/package.json. A cached result is only reused by the same build: the
cache key is a hash of the nncompress binary (plus the ORT version when ORT measured the result).

  /usr/bin/python3 tools/doc_stamp.py [--binary build/nncompress]   # one stamp line for a doc
  /usr/bin/python3 tools/doc_stamp.py --build-key build/nncompress   # a cache key for that build
  from doc_stamp import stamp, build_key                   # from a script in tools/ or bench/
"""
import argparse
import datetime
import hashlib
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit():
    """Short commit of the checkout, "-dirty" when tracked files are modified; "unknown" outside
    git."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def ort_version():
    path = os.path.join(ROOT, "node_modules", "onnxruntime-node", "package.json")
    try:
        with open(path) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "missing"


def stamp(binary=None):
    """One line for the top of a generated doc or table; with `binary`, also the build's hash
    (the commit alone does not say which build a table came from). Call it before opening the
    doc for writing: a truncated tracked file would mark the checkout dirty."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    build = f", nncompress build {build_key(binary, with_ort=False)}" if binary else ""
    return (f"Stamp: commit {git_commit()}{build}, ONNX Runtime {ort_version()} "
            f"(onnxruntime-node), {today} UTC.")


def build_key(binary, with_ort=True):
    """Cache key of a build: sha256 of the binary (16 hex digits), and the ORT version."""
    h = hashlib.sha256()
    with open(binary, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    key = h.hexdigest()[:16]
    return f"{key}-ort{ort_version()}" if with_ort else key


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-key", metavar="BINARY", help="print the cache key of this build")
    ap.add_argument("--ort-version", action="store_true", help="print the ONNX Runtime version")
    ap.add_argument("--binary", help="stamp: also the hash of this nncompress build")
    a = ap.parse_args()
    if a.build_key:
        print(build_key(a.build_key))
    elif a.ort_version:
        print(ort_version())
    else:
        print(stamp(a.binary))


if __name__ == "__main__":
    main()
