"""Training-step throughput of student-only vs Vanilla KD, measured in one run, as a ratio.

The target (issue: harness): a Vanilla KD step costs at most 1.35x a student-only step
(resnet18 at 64 px, batch 256, bf16 on a GPU). The KD step with a live teacher adds the frozen
teacher's forward pass and the pairing gather; with the teacher gallery (what `ackd-bench run`
does, `benchmark.gallery`) only a gather of cached outputs. Everything else is the same code
path as `ackd-bench run` (`benchmark.train.make_batch` and `train_step`).

Usage:
    python benchmarks/kd_step_throughput.py --device cuda --precision bf16      # on a GPU
    python benchmarks/kd_step_throughput.py --device cpu --batch 64 --steps 10  # a CPU check

Writes a JSON record (device name, settings, images/s, ratio) to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ackd_bench.benchmark.data import ModalityData, pair_same_class
from ackd_bench.benchmark.gallery import build_gallery
from ackd_bench.benchmark.method import DataInfo, create_method
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.train import make_batch, train_step


def synthetic_modality(n: int, channels: int, px: int, dtype: torch.dtype, n_classes: int,
                       device: torch.device, seed: int) -> ModalityData:
    """Random chips with the real storage dtypes (uint8 RGB; MS as shifted int16), on the device."""
    g = torch.Generator().manual_seed(seed)
    hi = 255 if dtype == torch.uint8 else 32767
    x = torch.randint(0, hi, (n, channels, px, px), generator=g).to(dtype)
    y = torch.arange(n) % n_classes
    splits = {s: x.to(device) for s in ("train", "val", "test")}
    labels = {s: y.to(device) for s in ("train", "val", "test")}
    mean = torch.full((channels,), hi / 2.0, device=device)
    std = torch.full((channels,), hi / 4.0, device=device)
    return ModalityData(x=splits, y=labels, mean=mean, std=std, offset=0.0, modality="synthetic")


def step_setup(name: str, student_data: ModalityData, teacher_data: ModalityData, arch: str, px: int,
               precision: str, device: torch.device, options: dict | None = None, *, gallery: bool = False,
               teacher: torch.nn.Module | None = None, compile_mode: str = "off"):
    """A method ready to train as ``fit`` sets it up, its optimiser, a generator and same-class partners.

    Args:
        gallery: the teacher's outputs come from its gallery (computed once, ``benchmark.gallery``),
            as in ``ackd-bench run``; off, the teacher runs at every step.
        teacher: a (trained) teacher; default: a fresh one.
        compile_mode: ``torch.compile`` mode of the student's training forward (``--compile``).
    """
    k = int(student_data.y["train"].max()) + 1
    info = DataInfo(n_classes=k, student_channels=student_data.channels, teacher_channels=teacher_data.channels,
                    class_names=tuple(map(str, range(k))), epochs=1)
    teacher = teacher if teacher is not None else create_classifier(arch, teacher_data.channels, k, seed=1).to(device)
    student = create_classifier(arch, student_data.channels, k, seed=0).to(device)
    method = create_method(name, student=student, teacher=teacher, info=info, **(options or {})).to(device)
    on_gpu = device.type == "cuda"
    if on_gpu:  # as fit() does on a GPU
        method.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
    method.compile_student(compile_mode)
    if gallery and method.uses_teacher:
        method.use_teacher_gallery(build_gallery(teacher, teacher_data, px, precision, budget=1 << 62,
                                                 channels_last=on_gpu))
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3, fused=on_gpu)
    gen = torch.Generator().manual_seed(0)
    partners = pair_same_class(student_data.y["train"], teacher_data.y["train"], gen)
    method.train()
    return method, opt, gen, partners


def time_method(name: str, student_data: ModalityData, teacher_data: ModalityData, arch: str, px: int,
                batch: int, steps: int, warmup: int, precision: str, device: torch.device,
                options: dict | None = None, *, gallery: bool = False, teacher: torch.nn.Module | None = None,
                compile_mode: str = "off") -> float:
    """Median seconds per training step of one method (``options`` override its config; see :func:`step_setup`)."""
    return time_steps(name, student_data, teacher_data, arch, px, batch, steps, warmup, precision, device, options,
                      gallery=gallery, teacher=teacher, compile_mode=compile_mode)[0]


def time_steps(name: str, student_data: ModalityData, teacher_data: ModalityData, arch: str, px: int,
               batch: int, steps: int, warmup: int, precision: str, device: torch.device,
               options: dict | None = None, *, gallery: bool = False, teacher: torch.nn.Module | None = None,
               compile_mode: str = "off") -> tuple[float, float]:
    """Median seconds per training step after ``warmup`` steps, and the seconds of the first step
    (which includes compiling, with ``compile_mode``, and the allocator's and cuDNN's warm-up)."""
    method, opt, gen, partners = step_setup(name, student_data, teacher_data, arch, px, precision, device, options,
                                            gallery=gallery, teacher=teacher, compile_mode=compile_mode)
    channels_last = device.type == "cuda"
    n = student_data.y["train"].shape[0]
    times = []
    for step in range(warmup + steps):
        idx = torch.randint(0, n, (batch,), generator=gen).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        live = method.uses_teacher and method.teacher_gallery is None
        b = make_batch(student_data, teacher_data if live else None, idx, partners[idx],
                       student_px=px, teacher_px=px, augment=True, generator=gen, epoch=0, progress=0.0,
                       channels_last=channels_last)
        train_step(method, opt, b, precision, where=f"benchmark {name}", check=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(torch.tensor(times[warmup:]).median()), times[0]


def step_parser(doc: str) -> argparse.ArgumentParser:
    """The options every training-step benchmark takes (device, arch, px, batch, steps, precision, out)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--px", type=int, default=64)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return ap


def synthetic_pair(args: argparse.Namespace) -> tuple[torch.device, ModalityData, ModalityData]:
    """The device and synthetic RGB (student) and MS (teacher) data the step benchmarks train on."""
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rgb = synthetic_modality(4096, 3, args.px, torch.uint8, 8, device, seed=0)
    ms = synthetic_modality(4096, 10, args.px, torch.int16, 8, device, seed=1)
    return device, rgb, ms


def main() -> None:
    args = step_parser(__doc__).parse_args()
    device, rgb, ms = synthetic_pair(args)
    # Interleave the two methods so drift (clocks, other load) affects both alike.
    variants = {"student-only": ("student-only", False), "kd": ("kd", False), "kd (teacher gallery)": ("kd", True)}
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(2):
        for name, (method, gallery) in variants.items():
            runs[name].append(time_method(method, rgb, ms, args.arch, args.px, args.batch, args.steps,
                                          args.warmup, args.precision, device, gallery=gallery))
    step = {name: min(v) for name, v in runs.items()}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    record = {
        "benchmark": "kd_step_throughput",
        "device": device_name,
        "torch": torch.__version__,
        "arch": args.arch, "px": args.px, "batch": args.batch, "precision": args.precision,
        "steps": args.steps, "warmup": args.warmup,
        "step_s": step,
        "images_per_s": {name: args.batch / s for name, s in step.items()},
        "kd_over_student_step_time": step["kd"] / step["student-only"],
        "kd_gallery_over_student_step_time": step["kd (teacher gallery)"] / step["student-only"],
        "target": "kd_over_student_step_time <= 1.35 (GPU, bf16, batch 256, resnet18, 64 px)",
    }
    write_record(record, args.out, "kd_step_throughput", device, args.precision)


def write_record(record: dict, out: Path, stem: str, device: torch.device, precision: str) -> Path:
    """Write a benchmark record as ``OUT/STEM_{cpu|cuda}_PRECISION.json`` and print it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}_{'cuda' if device.type == 'cuda' else 'cpu'}_{precision}.json"
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))
    return path


if __name__ == "__main__":
    main()
