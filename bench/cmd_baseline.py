"""``optbench baseline RUN_DIR --out FILE``: store a run's per-cell metrics as a regression baseline."""
from __future__ import annotations

from . import check

NAME = "baseline"
HELP = "write a baseline (JSON) of a run's per problem × optimizer metrics, for optbench check"


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="a complete run directory (optbench run --out ...)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="baseline file to write, e.g. results/baselines/quick.json (replaced if it exists; a missing "
                        "parent directory is created; never one of the run's own files)")


def run(args) -> int:
    # write_baseline refuses an --out that is one of the run's own files (meta.json, CSVs, traces)
    doc = check.write_baseline(args.run_dir, args.out)
    probs = len({c["problem"] for c in doc["cells"]})
    opts = len({c["optimizer"] for c in doc["cells"]})
    s = doc["settings"]
    print(f"baseline: {len(doc['cells'])} cells ({probs} problems × {opts} optimizers) from {args.run_dir} "
          f"[{' '.join(f'{k}={s[k]}' for k in check.SETTING_KEYS)}] -> {args.out}")
    return 0
