"""``optbench baseline RUN_DIR --out FILE``: store a run's per-cell metrics as a regression baseline."""
from __future__ import annotations

from . import check, store

NAME = "baseline"
HELP = "write a baseline (JSON) of a run's per problem × optimizer metrics, for optbench check"


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="a complete run directory (optbench run --out ...)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="baseline file to write, e.g. results/baselines/quick.json (an existing baseline is replaced, "
                        "and the output says so; any other existing file is refused; a missing parent directory is "
                        "created; never one of the run's own files)")


def run(args) -> int:
    # write_baseline refuses an --out that is one of the run's own files (meta.json, CSVs, traces)
    # or an existing file that is not a baseline
    store.refuse_run_output(args.out, args.run_dir)
    old = check.existing_baseline(args.out)
    doc = check.write_baseline(args.run_dir, args.out)
    probs = len({c["problem"] for c in doc["cells"]})
    opts = len({c["optimizer"] for c in doc["cells"]})
    s = doc["settings"]
    print(f"baseline: {len(doc['cells'])} cells ({probs} problems × {opts} optimizers) from {args.run_dir} "
          f"[{' '.join(f'{k}={s[k]}' for k in check.SETTING_KEYS)}] -> {args.out}")
    if old is not None:
        print(f"replaced the previous baseline in {args.out} (run {old.get('run_dir')} of {old.get('created')}, "
              f"commit {str(old.get('git_commit') or 'unknown')[:12]})")
    return 0
