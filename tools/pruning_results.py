#!/usr/bin/env python3
"""Pruning results table: every fixture, 30/50/70% of MACs removed, every criterion, with and
without recovery, accuracy on the 10k Fashion-MNIST TEST set. Every decision (data-driven criteria,
sensitivity allocation, recovery) sees only the first 50k TRAIN images (--data-range 0:50000); the
test set is read once per pruned model, for the reported accuracy.

Calls the CLI only (`nncompress prune` and `nncompress eval`). Every finished run is cached as
JSON under --cache/<build key> (tools/doc_stamp.py: a hash of the nncompress binary), so the
script is resumable with the same build: run it again and it continues where it stopped (and only
rewrites the table when nothing is left, or with --table-only at any time). A new build starts an
empty cache: results of another build are never mixed into the table.

  /usr/bin/python3 tools/pruning_results.py                       # the whole grid (hours on 2 cores)
  /usr/bin/python3 tools/pruning_results.py --fixtures resnet --targets 0.5   # the acceptance row
  /usr/bin/python3 tools/pruning_results.py --table-only          # table from what is cached
"""
import argparse
import json
import os
import subprocess
import sys
import time

from doc_stamp import build_key, stamp  # same folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
NORM = ["--mean", "0.2860", "--std", "0.3530"]
# Calibration for criteria, sensitivity and recovery: training images only (the last 10k are the
# validation slice the other results scripts decide on).
TRAIN = ["--data", f"{DATA}/train-images-idx3-ubyte.gz", "--data-range", "0:50000"] + NORM
TEST = ["--data", f"{DATA}/t10k-images-idx3-ubyte.gz",
        "--labels", f"{DATA}/t10k-labels-idx1-ubyte.gz"] + NORM
FIXTURES = ["resnet", "vgg_bn", "mobilenetv2", "densenet", "flatten_head"]
CRITERIA = ["random", "l1", "l2", "bn-gamma", "fpgm", "similarity-chain", "activation",
            "contribution", "taylor"]
# Rows beyond the uniform one-shot grid, "criterion:allocation[:steps]", run with recovery only:
# global ranking in one step and in 4 steps with recovery after each (`prune --steps`), the best
# configuration measured on resnet and random / l1 with the same settings. Measured per-group
# sensitivity ("contribution:sensitivity", ...) is slower; pass it with --extra.
EXTRA = ["contribution:global", "l1:global", "random:global", "contribution:global:4",
         "l1:global:4", "random:global:4"]
RECOVER = ["none", "bn", "lsq"]  # --recover choices; the default grid: none and lsq
TARGETS = [0.7, 0.5, 0.3]  # fraction of MACs kept: 30 / 50 / 70 % removed


def run(cmd, log):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if log:
        print(f"  {' '.join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))}"
              f"  [{time.time() - t0:.0f}s, exit {p.returncode}]", file=sys.stderr)
    return p


def key(fixture, target, criterion, allocation, recover, steps=1):
    k = f"{fixture}__{target}__{criterion}__{allocation}__{recover}"
    return k if steps == 1 else f"{k}__s{steps}"


def parse_extra(spec):
    parts = spec.split(":")
    return parts[0], parts[1], int(parts[2]) if len(parts) > 2 else 1


def evaluate(binary, model, limit, threads):
    cmd = [binary, "eval", model] + TEST + ["--json", "--threads", str(threads)]
    if limit:
        cmd += ["--limit", str(limit)]
    p = run(cmd, True)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout)


def save(obj, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def cached(path):
    """A finished run. Failed runs are stored too (the table shows them) but run again on resume:
    a crash, a kill or a full disk must not stay in the table as the method's result."""
    if not os.path.exists(path):
        return False
    try:
        res = json.load(open(path))
    except ValueError:
        return False
    return "error" not in res or res.get("exit") == 1  # exit 1: the target cannot be met


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nncompress"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "pruning-results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "pruning-results.md"))
    ap.add_argument("--fixtures", nargs="+", default=FIXTURES)
    ap.add_argument("--targets", nargs="+", type=float, default=TARGETS)
    ap.add_argument("--criteria", nargs="+", default=CRITERIA)
    ap.add_argument("--recover", nargs="+", default=["none", "lsq"], choices=RECOVER)
    ap.add_argument("--extra", nargs="*", default=EXTRA,
                    help="extra rows, criterion:allocation[:steps] (default: %(default)s)")
    ap.add_argument("--no-extra", action="store_true", help="no extra rows")
    ap.add_argument("--calib-size", type=int, default=1024)
    ap.add_argument("--limit", type=int, default=0, help="test images (0: all 10k)")
    ap.add_argument("--threads", type=int, default=0, help="worker threads (0: every core)")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    args.cache = os.path.join(args.cache, build_key(args.binary, with_ort=False))
    os.makedirs(args.cache, exist_ok=True)
    print(f"cache: {args.cache}", file=sys.stderr)

    configs = []
    for fixture in args.fixtures:
        for target in args.targets:
            rows = [(c, "uniform", 1) for c in args.criteria]
            if not args.no_extra:
                rows += [parse_extra(e) for e in args.extra]
            for recover in args.recover:
                for criterion, allocation, steps in rows:
                    if (criterion, allocation, steps) != (criterion, "uniform", 1) \
                            and recover == "none":
                        continue  # the extra rows compare recovered models
                    configs.append((fixture, target, criterion, allocation, recover, steps))

    if not args.table_only:
        for fixture in args.fixtures:
            base = os.path.join(args.cache, f"{fixture}__baseline.json")
            if not cached(base):
                r = evaluate(args.binary, os.path.join(ROOT, "models", f"{fixture}.onnx"),
                             args.limit, args.threads)
                save(r, base)
        for n, cfg in enumerate(configs):
            path = os.path.join(args.cache, key(*cfg) + ".json")
            if cached(path):
                continue
            fixture, target, criterion, allocation, recover, steps = cfg
            print(f"[{n + 1}/{len(configs)}] {fixture} keep {target} MACs {criterion} "
                  f"{allocation} recover {recover} steps {steps}", file=sys.stderr)
            model = os.path.join(args.cache, key(*cfg) + ".onnx")
            cmd = [args.binary, "-q", "prune", os.path.join(ROOT, "models", f"{fixture}.onnx"), "-o",
                   model, "--method", criterion, "--target-macs", str(target), "--allocation",
                   allocation, "--recover", recover, "--json", "--threads", str(args.threads)]
            if steps > 1:
                cmd += ["--steps", str(steps)]
            if criterion in ("activation", "contribution", "taylor") or allocation == "sensitivity" \
                    or recover != "none":
                cmd += TRAIN + ["--calib-size", str(args.calib_size)]
            t0 = time.time()
            p = run(cmd, True)
            result = {"config": cfg, "prune_seconds": round(time.time() - t0, 1)}
            if p.returncode != 0:
                result["exit"] = p.returncode
                result["error"] = (p.stderr.strip().splitlines() or ["?"])[-1]
            else:
                pj = json.loads(p.stdout)
                result["macs_kept"] = pj["macs_kept"]
                result["params_kept"] = pj["params_kept"]
                result["eval"] = evaluate(args.binary, model, args.limit, args.threads)
                if "error" in result["eval"]:
                    result["error"] = "eval: " + " ".join(result["eval"]["error"])
                if os.path.exists(model):
                    os.remove(model)
            save(result, path)
    write_table(args, configs)


def write_table(args, configs):
    lines = ["# Pruning results", "",
             "Generated by `/usr/bin/python3 tools/pruning_results.py` (do not edit by hand). "
             + stamp(args.binary),
             "Top-1 on the 10k Fashion-MNIST test set after pruning to the given fraction of the",
             "fixture's MACs (`--target-macs`), calibration on the first "
             f"{args.calib_size} training images (data-driven criteria, sensitivity, recovery;",
             "`--data train-images-idx3-ubyte.gz --data-range 0:50000`: no decision sees the test",
             "set).",
             "No gradient training anywhere. Cells: top-1 % (change vs the unpruned model, "
             "points); `-`: not run yet; unreachable: the model cannot be pruned that far with",
             "every prunable group at its floor (`--floor`, default 0.1); error: the run failed",
             "(it is retried when the script is run again).",
             "Allocation `global, N steps`: `prune --steps N`, the target reached in N steps, each",
             "re-scored on the model recovered after the step before (least squares against the",
             "unpruned model's outputs). Rows other than uniform are run with recovery only (n/a).",
             "Reproduce one cell: `nncompress prune models/F.onnx -o out.onnx --method M",
             "--target-macs T --allocation A --recover R [--steps N] --data "
             "train-images-idx3-ubyte.gz --data-range 0:50000 --mean 0.2860 --std 0.3530 "
             "--calib-size "
             f"{args.calib_size}`, then `nncompress eval out.onnx` on the test set.", ""]
    fixtures = []
    for c in configs:
        if c[0] not in fixtures:
            fixtures.append(c[0])
    for fixture in fixtures:
        base_path = os.path.join(args.cache, f"{fixture}__baseline.json")
        base = json.load(open(base_path)) if os.path.exists(base_path) else {}
        b1 = base.get("top1")
        lines.append(f"## {fixture} (unpruned top-1 {100 * b1:.2f}%)" if b1 else f"## {fixture}")
        lines.append("")
        targets = sorted({c[1] for c in configs if c[0] == fixture}, reverse=True)
        recovers = [r for r in RECOVER if any(c[4] == r for c in configs)]
        header = "| criterion | allocation |"
        sep = "|---|---|"
        for t in targets:
            for r in recovers:
                header += f" {100 * (1 - t):.0f}% MACs removed, {r} |"
                sep += "---|"
        lines += [header, sep]
        rows = []
        for c in configs:
            if c[0] == fixture and (c[2], c[3], c[5]) not in rows:
                rows.append((c[2], c[3], c[5]))
        for criterion, allocation, steps in rows:
            label = allocation if steps == 1 else f"{allocation}, {steps} steps"
            line = f"| {criterion} | {label} |"
            for t in targets:
                for r in recovers:
                    path = os.path.join(args.cache,
                                        key(fixture, t, criterion, allocation, r, steps) + ".json")
                    cell = "-" if (allocation == "uniform" and steps == 1) or r != "none" \
                        else "n/a"
                    if os.path.exists(path):
                        res = json.load(open(path))
                        top1 = res.get("eval", {}).get("top1")
                        if top1 is not None and b1:
                            cell = f"{100 * top1:.2f} ({100 * (top1 - b1):+.2f})"
                        elif res.get("exit") == 1:
                            cell = "unreachable"
                        elif "error" in res:
                            cell = "error"
                    line += f" {cell} |"
            lines.append(line)
        lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
