"""Training-step cost of SemBridge (both planners) vs student-only and Vanilla KD, as ratios from one run.

The target (issue: SemBridge): a SemBridge step costs at most 1.5x a student-only step (resnet18 at
64 px, batch 256, bf16 on a GPU), for the attention planner and the Sinkhorn planner. The step is
`ackd-bench run`'s own code path (`benchmark.train.make_batch` and `train_step`): the student, the
frozen teacher's outputs from its gallery (Vanilla KD is timed with the gallery too), the base KD
loss, the SKA planner and both CORAL terms. Re-matching
is not part of a step (it runs a few times per training run; see `benchmarks/rematch_speed.py`).

Usage:
    python benchmarks/sembridge_step.py --device cuda --precision bf16      # on a GPU
    python benchmarks/sembridge_step.py --device cpu --batch 64 --steps 5 --precision fp32  # a CPU check

Writes a JSON record (device name, settings, seconds per step, ratios) to --out.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from kd_step_throughput import step_parser, synthetic_pair, time_method, write_record  # noqa: E402

VARIANTS = {
    "student-only": ("student-only", {}),
    "kd": ("kd", {}),
    "sembridge (attention)": ("sembridge", {"planner": "attention"}),
    "sembridge (sinkhorn)": ("sembridge", {"planner": "sinkhorn"}),
}


def main() -> None:
    ap = step_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=2, help="Interleaved rounds; the fastest round counts.")
    args = ap.parse_args()
    device, rgb, ms = synthetic_pair(args)
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):  # interleaved so drift (clocks, other load) affects every variant alike
        for name, (method, options) in VARIANTS.items():
            runs[name].append(time_method(method, rgb, ms, args.arch, args.px, args.batch, args.steps,
                                          args.warmup, args.precision, device, options, gallery=True))
    step = {name: min(v) for name, v in runs.items()}
    base = step["student-only"]
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    ratios = {name: s / base for name, s in step.items()}
    record = {
        "benchmark": "sembridge_step",
        "device": device_name,
        "torch": torch.__version__,
        "arch": args.arch, "px": args.px, "batch": args.batch, "precision": args.precision,
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "step_s": step,
        "images_per_s": {name: args.batch / s for name, s in step.items()},
        "over_student_step_time": ratios,
        "target": "sembridge over student-only <= 1.5 for both planners (GPU, bf16, batch 256, resnet18, 64 px)",
        "meets_target": all(r <= 1.5 for n, r in ratios.items() if n.startswith("sembridge")),
    }
    write_record(record, args.out, "sembridge_step", device, args.precision)


if __name__ == "__main__":
    main()
