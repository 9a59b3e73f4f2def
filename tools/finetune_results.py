#!/usr/bin/env python3
"""Fine-tuning results table: every fixture, 30/50/70% of MACs removed, several criteria (taylor
beside the others), least-squares recovery, then with and without 2 epochs of distillation from
the unpruned model on the 60k Fashion-MNIST training images WITHOUT labels (`nncompress
finetune`). Accuracy: top-1 in ONNX Runtime (tools/ort_accuracy.py) on the 10k TEST set, which
no decision sees (pruning calibrates on the first 1024 of the training images 0:50000; the
fine-tuning sees training images only and no labels).

Calls the CLI only. Every finished cell is cached as JSON under --cache/<build key>
(tools/doc_stamp.py), so the script is resumable with the same build; a new build starts an
empty cache. Long: each fine-tuned cell is 120k training images (minutes on 2 cores).

  /usr/bin/python3 tools/finetune_results.py                                  # the whole grid
  /usr/bin/python3 tools/finetune_results.py --fixtures resnet --targets 0.5 --criteria contribution
  /usr/bin/python3 tools/finetune_results.py --table-only
  /usr/bin/python3 tools/finetune_results.py --fixtures resnet --targets 0.5 \
      --finetune-args="--ema 0.999 --augment-flip"          # a variant: its own cells
"""
import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time

from doc_stamp import build_key, stamp  # same folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
NORM = ["--mean", "0.2860", "--std", "0.3530"]
CALIB = ["--data", f"{DATA}/train-images-idx3-ubyte.gz", "--data-range", "0:50000"] + NORM
TRAIN = ["--data", f"{DATA}/train-images-idx3-ubyte.gz"] + NORM  # all 60k, no labels
FIXTURES = ["resnet", "vgg_bn", "mobilenetv2", "densenet", "flatten_head", "preact_densenet"]
CRITERIA = ["l1", "contribution", "taylor", "random"]
TARGETS = [0.7, 0.5, 0.3]  # fraction of MACs kept: 30 / 50 / 70 % removed


LAST_CPU = [0.0]  # CPU seconds (user + sys) of the last run()


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd):
    t0, c0 = time.time(), children_cpu()
    p = subprocess.run(cmd, capture_output=True, text=True)
    LAST_CPU[0] = children_cpu() - c0
    print(f"  {' '.join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))}"
          f"  [{time.time() - t0:.0f}s, exit {p.returncode}]", file=sys.stderr)
    return p, time.time() - t0


def ort_top1(model):
    p, _ = run(["/usr/bin/python3", os.path.join(ROOT, "tools", "ort_accuracy.py"), model])
    if p.returncode != 0:
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])["top1"]


def save(obj, path):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def variant(args):
    """Cache-name suffix of --finetune-args ('' for the defaults)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "_", args.finetune_args).strip("_")
    return f"__{slug}" if slug else ""


def cell_stem(args, fixture, target, criterion):
    return os.path.join(args.cache, f"{fixture}__{target}__{criterion}__s{args.steps}"
                        f"__e{args.epochs}{variant(args)}")


def cell(args, fixture, target, criterion):
    """Prune (lsq), measure, fine-tune, measure; cached per stage so a kill loses one stage."""
    stem = cell_stem(args, fixture, target, criterion)
    res = load(stem + ".json") or {}
    if "error" in res or "tuned_top1" in res:
        return res
    pruned, tuned = stem + "_pruned.onnx", stem + "_tuned.onnx"
    if "pruned_top1" not in res or not os.path.exists(pruned):
        cmd = [args.binary, "-q", "prune", os.path.join(ROOT, "models", f"{fixture}.onnx"), "-o",
               pruned, "--method", criterion, "--target-macs", str(target), "--allocation",
               "global", "--recover", "lsq", "--steps", str(args.steps), "--calib-size", "1024",
               "--json",
               "--threads", str(args.threads)] + CALIB
        p, secs = run(cmd)
        if p.returncode != 0:
            res = {"error": (p.stderr.strip().splitlines() or ["?"])[-1], "exit": p.returncode}
            save(res, stem + ".json")
            return res
        pj = json.loads(p.stdout)
        res = {"macs_kept": pj["macs_kept"], "params_kept": pj["params_kept"],
               "prune_seconds": round(secs, 1), "pruned_top1": ort_top1(pruned)}
        save(res, stem + ".json")
    if args.no_finetune:
        return res
    cmd = [args.binary, "finetune", pruned, "-o", tuned, "--teacher",
           os.path.join(ROOT, "models", f"{fixture}.onnx"), "--epochs", str(args.epochs),
           "--checkpoint", stem + "_ckpt", "--json", "--threads", str(args.threads)] + TRAIN \
        + shlex.split(args.finetune_args)
    p, secs = run(cmd)
    if p.returncode != 0:
        res["finetune_error"] = (p.stderr.strip().splitlines() or ["?"])[-1]
        return res  # not saved as final: retried on the next run
    fj = json.loads(p.stdout)["finetune"]
    res.update({"finetune_seconds": round(secs, 1), "finetune_cpu_seconds": round(LAST_CPU[0], 1),
                "images_per_second": round(fj["images_per_second"], 1),
                "bn_reestimated": fj["batch_norm_reestimated"], "tuned_top1": ort_top1(tuned)})
    save(res, stem + ".json")
    for path in (pruned, tuned):
        if os.path.exists(path):
            os.remove(path)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nncompress"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "finetune-results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "finetune-results.md"))
    ap.add_argument("--fixtures", nargs="+", default=FIXTURES)
    ap.add_argument("--targets", nargs="+", type=float, default=TARGETS)
    ap.add_argument("--criteria", nargs="+", default=CRITERIA)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1, help="prune --steps (re-score between)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-finetune", action="store_true", help="pruned columns only")
    ap.add_argument("--finetune-args", default="",
                    help="extra `nncompress finetune` flags (a variant; cached apart)")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    args.cache = os.path.join(args.cache, build_key(args.binary, with_ort=True))
    os.makedirs(args.cache, exist_ok=True)
    print(f"cache: {args.cache}", file=sys.stderr)
    if not args.table_only:
        for fixture in args.fixtures:
            base = os.path.join(args.cache, f"{fixture}__baseline.json")
            if not load(base):
                save({"top1": ort_top1(os.path.join(ROOT, "models", f"{fixture}.onnx"))}, base)
            for target in args.targets:
                for criterion in args.criteria:
                    print(f"{fixture} keep {target} MACs {criterion}", file=sys.stderr)
                    cell(args, fixture, target, criterion)
    write_table(args)


def write_table(args):
    doc_stamp = stamp(args.binary)
    lines = ["# Fine-tuning results", "",
             "Generated by `/usr/bin/python3 tools/finetune_results.py` (do not edit by hand). "
             + doc_stamp,
             "Top-1 in ONNX Runtime on the 10k Fashion-MNIST test set. Pruning: `nncompress prune",
             "--target-macs T --allocation global --recover lsq --steps "
             f"{args.steps}`, calibration on the first 1024",
             "training images. Fine-tuned: then `nncompress finetune --epochs "
             f"{args.epochs}` (its defaults:",
             "AdamW, lr 1e-3, cosine with warm-up; T = 4 up to build 24ca1329a3d83a0b, 2 after; see",
             "docs/cli.md) from the unpruned model",
             "on the 60k training images without labels. Cells: top-1 % (change vs the unpruned",
             "model, points); `-`: not run. Time: the fine-tuning's wall time on the machine it ran",
             "on and its CPU time (2 cores shared with other jobs: wall time varies with the load).",
             "", f"This run: fixtures {' '.join(args.fixtures)}; MACs kept "
             f"{' '.join(str(t) for t in args.targets)}; criteria {' '.join(args.criteria)}"
             + ("; pruned columns only (--no-finetune)" if args.no_finetune else "")
             + (f"; fine-tuning flags `{args.finetune_args}`" if args.finetune_args else "")
             + ".", ""]
    for fixture in args.fixtures:
        base = load(os.path.join(args.cache, f"{fixture}__baseline.json")) or {}
        b1 = base.get("top1")
        lines += [f"## {fixture} (unpruned top-1 {100 * b1:.2f}%)" if b1 else f"## {fixture}", ""]
        header, sep = "| criterion |", "|---|"
        for t in args.targets:
            header += f" {100 * (1 - t):.0f}% removed, lsq | {100 * (1 - t):.0f}% removed, " \
                      f"+ {args.epochs} epochs | time |"
            sep += "---|---|---|"
        lines += [header, sep]
        for criterion in args.criteria:
            line = f"| {criterion} |"
            for t in args.targets:
                res = load(cell_stem(args, fixture, t, criterion) + ".json") or {}
                def fmt(v):
                    return f"{100 * v:.2f} ({100 * (v - b1):+.2f})" if v is not None and b1 \
                        else "-"
                if res.get("exit") == 1:
                    line += " unreachable | | |"
                elif "error" in res:
                    line += " error | | |"
                else:
                    secs, cpu = res.get("finetune_seconds"), res.get("finetune_cpu_seconds")
                    when = f"{secs / 60:.1f} min" if secs else "-"
                    if secs and cpu:
                        when += f" ({cpu / 60:.1f} CPU-min)"
                    line += f" {fmt(res.get('pruned_top1'))} | {fmt(res.get('tuned_top1'))} |" \
                            f" {when} |"
            lines.append(line)
        lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
