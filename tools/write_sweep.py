#!/usr/bin/python3
"""Never write a wrong model (issue 12): run `prune --ratio 0.5` and `quantize` on every model of
/usr/share/libonnx-testdata/data, the torchvision exports (tools/export_torchvision.py) and the real
pretrained models of ../shared/real-models, and classify each run:

  refused      exit 1, 2, 3 or 4, one stderr line, no file left in the output folder
  messy        a refusal with several stderr lines or a file left behind
  written ok   exit 0 and the file passes every check below
  INVALID      exit 0 (or any exit) with a file that fails a check
  EXIT 5       an internal error (a bug, whatever it says)
  CRASH        killed by a signal, or the per-run timeout

Checks of a written file: our own loader (`nncompress report OUT --json`, which runs the ONNX
checker), ONNX's checker with strict shape inference and data propagation (python3-onnx, when
installed), and ONNX Runtime: tools/ort/run.js on the model's test_data_set_0 inputs (or a
seeded random input for the torchvision exports and ../shared/real-models) must run and give the
original's output shapes (when ORT runs the original; else tools/ort/check.js must load it).

    /usr/bin/python3 tools/write_sweep.py [--nncompress build/nncompress] [--jobs 2]
        [--timeout 120] [--torchvision build/torchvision] [--shared ../shared/real-models]
        [--filter SUBSTRING] [--json out.json]

Quantize gets --calib test_data_set_0 (a folder of TensorProto .pb files; one --calib per
input_N.pb for a model with several inputs) for models that have one, else a random .npy from the
input shape. Exit status: 0 when there is no INVALID, EXIT 5 or
CRASH run, 1 otherwise. Python standard library and Debian's python3-onnx / numpy only.
"""
import argparse
import collections
import concurrent.futures
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import doc_stamp  # same folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = "/usr/share/libonnx-testdata/data"
SUITES = ("node", "pytorch-converted", "pytorch-operator", "simple", "real")

try:
    import onnx
    import onnx.shape_inference
except ImportError:  # the ONNX checker then comes from our loader alone
    onnx = None


def run(cmd, timeout, cwd=None):
    """(exit code or -signal or 'timeout', stdout, stderr)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return "timeout", "", ""


def find_models(torchvision, shared):
    models = []
    for suite in SUITES:
        models += sorted(glob.glob(os.path.join(TESTDATA, suite, "**", "*.onnx"), recursive=True))
    for folder in (torchvision, shared):
        if folder and os.path.isdir(folder):
            models += sorted(glob.glob(os.path.join(folder, "*.onnx")))
    return models


def label(path):
    if path.startswith(TESTDATA + "/"):
        return path[len(TESTDATA) + 1:]
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


def test_inputs(model):
    """The model's sample inputs as run.js arguments, or None."""
    pbs = sorted(glob.glob(os.path.join(os.path.dirname(model), "test_data_set_0", "input_*.pb")))
    return ["--input-pb=" + p for p in pbs] if pbs else None


def random_input(model, work):
    """A seeded random .npy for a model with one float input (torchvision, real models):
    symbolic dims become 1 for the batch axis, 64 elsewhere."""
    rc, out, _ = run(["node", os.path.join(ROOT, "tools/ort/check.js"), model], 60)
    if rc != 0:
        return None
    inputs = json.loads(out)["inputs"]
    if len(inputs) != 1 or inputs[0]["type"] != "float32":
        return None
    dims = [d if isinstance(d, int) and d > 0 else (1 if i == 0 else 64)
            for i, d in enumerate(inputs[0]["dims"])]
    import numpy as np
    x = np.random.default_rng(0).random(dims, dtype=np.float32)
    path = os.path.join(work, "input.npy")
    np.save(path, x)
    return path


def ort_run(model, inputs, work, name):
    """(output dims list, None) or (None, error line)."""
    out_dir = os.path.join(work, "ort_" + name)
    args = []
    for a in inputs:
        args += a.split("=", 1) if a.startswith("--input-pb=") else ["--input", a]
    rc, out, err = run(["node", os.path.join(ROOT, "tools/ort/run.js"), model, *args,
                        "--out-dir", out_dir], 120)
    shutil.rmtree(out_dir, ignore_errors=True)
    if rc != 0:
        return None, first_line(err) or "run.js exit %s" % rc
    return [o["dims"] for o in json.loads(out)["outputs"]], None


def ort_loads(model):
    rc, _, err = run(["node", os.path.join(ROOT, "tools/ort/check.js"), model], 120)
    return rc == 0, first_line(err)


def first_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[0][:300] if lines else ""


def onnx_check(path):
    """None when ONNX's checker and strict shape inference accept the file, else the error."""
    if onnx is None:
        return None
    try:
        m = onnx.load(path)
        onnx.checker.check_model(m)
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)
        return None
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        return "%s: %s" % (type(e).__name__, first_line(str(e)))


class Baseline:
    """What the original gives, computed once per model and only when something was written."""

    def __init__(self, model, work):
        self.model, self.work = model, work
        self._done = False

    def get(self):
        if not self._done:
            self._done = True
            self.inputs = test_inputs(self.model)
            if self.inputs is None:
                npy = random_input(self.model, self.work)
                self.inputs = [npy] if npy else None
            self.dims, self.run_error = (ort_run(self.model, self.inputs, self.work, "orig")
                                         if self.inputs else (None, "no sample input"))
            self.loads, self.load_error = ort_loads(self.model)
            self.onnx_error = onnx_check(self.model)
        return self


def verify(out, nncompress, base, work, timeout):
    """A list of problems of a written file (empty: valid)."""
    problems = []
    rc, _, err = run([nncompress, "-q", "report", out, "--json"], timeout)
    if rc != 0:
        problems.append("our loader (report) exit %s: %s" % (rc, first_line(err)))
    e = onnx_check(out)
    if e:
        also = " (the original fails it too)" if base.onnx_error else ""
        problems.append("ONNX checker/strict inference%s: %s" % (also, e))
    if base.dims is not None:
        dims, err = ort_run(out, base.inputs, work, "out")
        if err:
            problems.append("ORT does not run it: " + err)
        elif dims != base.dims:
            problems.append("ORT output shapes %s, the original's %s" % (dims, base.dims))
    elif base.loads:
        ok, err = ort_loads(out)
        if not ok:
            problems.append("ORT does not load it: " + err)
    # else: ORT loads neither the original nor (probably) this; the other checks decide.
    return problems


def command(kind, model, out, calib):
    if kind == "prune":
        return ["prune", model, "-o", out, "--ratio", "0.5"]
    cmd = ["quantize", model, "-o", out]
    for spec in calib:
        cmd += ["--calib", spec]
    return cmd


def calibration_specs(model, work):
    """--calib SPECs: test_data_set_0 (one folder, or one input_N.pb per input: unnamed SPECs feed
    the model inputs in order), else a random .npy for a one-input float model, else none."""
    folder = os.path.join(os.path.dirname(model), "test_data_set_0")
    pbs = sorted(glob.glob(os.path.join(folder, "input_*.pb")),
                 key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))
    if len(pbs) > 1:
        return pbs
    if os.path.isdir(folder):
        return [folder]
    npy = random_input(model, work)
    return [npy] if npy else []


def sweep_one(model, nncompress, timeout):
    work = tempfile.mkdtemp(prefix="nnc_sweep_")
    try:
        base = Baseline(model, work)
        calib = calibration_specs(model, work)
        results = []
        for kind in ("prune", "quantize"):
            out_dir = os.path.join(work, kind)
            os.makedirs(out_dir)
            out = os.path.join(out_dir, "out.onnx")
            t0 = time.time()
            rc, _, err = run([nncompress, "-q", *command(kind, model, out, calib)], timeout)
            left = sorted(os.listdir(out_dir))
            err_lines = [l for l in err.splitlines() if l.strip()]
            r = {"model": label(model), "command": kind, "exit": rc, "stderr": first_line(err),
                 "seconds": round(time.time() - t0, 2)}
            if rc == "timeout":
                r["class"] = "CRASH"
                r["stderr"] = "timed out after %ss" % timeout
            elif isinstance(rc, int) and rc < 0:
                r["class"] = "CRASH"
                r["stderr"] = "killed by %s; %s" % (signal.Signals(-rc).name, r["stderr"])
            elif rc == 5:
                r["class"] = "EXIT 5"
            elif rc == 0 or "out.onnx" in left:
                problems = verify(out, nncompress, base.get(), work, timeout) \
                    if "out.onnx" in left else ["exit 0 but no file written"]
                if rc != 0:
                    problems.insert(0, "exit %s left the file behind" % rc)
                r["class"] = "INVALID" if problems else "written ok"
                if problems:
                    r["problems"] = problems
            elif rc in (1, 2, 3, 4):
                clean = len(err_lines) == 1 and not left
                r["class"] = "refused" if clean else "messy"
                if not clean:
                    r["problems"] = (["left %s" % left] if left else []) + \
                        (["%d stderr lines" % len(err_lines)] if len(err_lines) != 1 else [])
            else:
                r["class"] = "CRASH"
            if rc == 5 and "out.onnx" in left:
                r.setdefault("problems", []).append("exit 5 left the file behind")
            results.append(r)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def refusal_reason(line):
    """An error line without its file paths and quoted names, to group refusals."""
    line = re.sub(r"^nncompress: error: ", "", line)
    line = re.sub(r"/\S+?: ", "", line)
    return re.sub(r"'[^']*'", "'...'", line)[:150]


def write_doc(path, count, summary, stamp):
    with open(path, "w") as f:
        f.write("# Write sweep: prune and quantize on every model we can find\n\n")
        f.write("Generated by `tools/write_sweep.py --doc docs/write-sweep.md`. Do not edit by hand. "
                + stamp + "\n\n")
        f.write("%d models: every model of /usr/share/libonnx-testdata/data, the torchvision exports "
                "of tools/export_torchvision.py (random weights) and ../shared/real-models. Each goes "
                "through `prune --ratio 0.5` and `quantize`; a run is a clean refusal (exit 1-4, one "
                "stderr line, no file), or it wrote a model that must load in our loader, pass the ONNX "
                "checker with strict shape inference and data propagation, and run in ONNX Runtime with "
                "the original's output shapes. INVALID counts written models that fail that; EXIT 5 "
                "counts internal errors (the gate refusing our own output), CRASH signals.\n\n" % count)
        f.write("```\n" + "\n".join(summary) + "\n```\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_bin = "/work/main/build/nncompress"
    if not os.path.exists(default_bin):
        default_bin = os.path.join(ROOT, "build/nncompress")
    ap.add_argument("--nncompress", default=default_bin)
    ap.add_argument("--jobs", type=int, default=2, choices=(1, 2))
    ap.add_argument("--timeout", type=int, default=120, help="seconds per command")
    ap.add_argument("--torchvision", default=os.path.join(ROOT, "build/torchvision"),
                    help="folder of tools/export_torchvision.py's exports")
    ap.add_argument("--shared", default=os.path.join(ROOT, "../shared/real-models"),
                    help="the real pretrained models (../shared/real-models), if present")
    ap.add_argument("--filter", default="", help="only models whose path contains this")
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--doc", help="also write the summary as markdown here (docs/write-sweep.md),"
                    " stamped with the commit, the build and the ONNX Runtime version")
    args = ap.parse_args()
    if not os.access(args.nncompress, os.X_OK):
        sys.exit("no nncompress binary at %s (build it, or pass --nncompress)" % args.nncompress)
    models = [m for m in find_models(args.torchvision, args.shared) if args.filter in m]
    print("sweep: %d models, %s, onnx checker: %s" % (
        len(models), args.nncompress, "python3-onnx " + onnx.__version__ if onnx else
        "our loader only (python3-onnx missing)"), flush=True)
    t0 = time.time()
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(sweep_one, m, args.nncompress, args.timeout) for m in models]
        for i, f in enumerate(futures, 1):
            results += f.result()
            if i % 100 == 0:
                print("  %d / %d models (%.0f s)" % (i, len(models), time.time() - t0), flush=True)

    classes = ("refused", "written ok", "messy", "INVALID", "EXIT 5", "CRASH")
    out = ["%-10s %8s %8s" % ("class", "prune", "quantize")]
    for c in classes:
        out.append("%-10s %8d %8d" % (
            c, sum(r["class"] == c and r["command"] == "prune" for r in results),
            sum(r["class"] == c and r["command"] == "quantize" for r in results)))
    out += ["", "most common refusals (paths and names elided):"]
    reasons = collections.Counter((r["command"], refusal_reason(r["stderr"]))
                                  for r in results if r["class"] == "refused")
    for (kind, reason), n in reasons.most_common(12):
        out.append("%5d %-8s %s" % (n, kind, reason))
    bad = [r for r in results if r["class"] in ("INVALID", "EXIT 5", "CRASH", "messy")]
    for c in ("INVALID", "EXIT 5", "CRASH", "messy"):
        rows = [r for r in bad if r["class"] == c]
        if rows:
            out += ["", "== %s (%d)" % (c, len(rows))]
        for r in rows:
            out.append("%s %s: exit %s: %s" % (r["command"], r["model"], r["exit"], r["stderr"]))
            out += ["    " + p for p in r.get("problems", [])]
    out += ["", "invalid writes: %d, exit 5: %d, crashes: %d, messy refusals: %d (%.0f s)" % (
        sum(r["class"] == "INVALID" for r in results), sum(r["class"] == "EXIT 5" for r in results),
        sum(r["class"] == "CRASH" for r in results), sum(r["class"] == "messy" for r in results),
        time.time() - t0)]
    print("\n" + "\n".join(out))
    if args.doc:
        write_doc(args.doc, len(models), out, doc_stamp.stamp(args.nncompress))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if any(r["class"] in ("INVALID", "EXIT 5", "CRASH") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
