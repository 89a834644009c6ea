"""Knowledge distillation in plain PyTorch on a built ackd-bench dataset (no harness).

An MS teacher is trained on the MS chips; an RGB student learns from its labels and from the
teacher's soft predictions on a same-class MS partner (unpaired: the partner is any MS chip of
the student's class, drawn afresh every batch by ``bench.partners``).

    python examples/train_kd.py data/demo --epochs 5
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ackd_bench.benchmark import load


def net(channels: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))


def fit(model, loader, epochs, loss_fn):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for batch in loader:
            loss = loss_fn(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()


@torch.no_grad()
def accuracy(model, data) -> float:
    model.eval()
    hits = [model(b["image"]).argmax(1) == b["label"] for b in DataLoader(data, batch_size=256)]
    return torch.cat(hits).float().mean().item()


def main(path, epochs=5, T=4.0, alpha=0.9, seed=0) -> dict[str, float]:
    torch.manual_seed(seed)
    bench = load(path)
    ms, rgb = bench.split("ms", "train"), bench.split("rgb", "train")
    teacher, student = net(len(ms.bands), len(bench.classes)), net(len(rgb.bands), len(bench.classes))
    fit(teacher, DataLoader(ms, batch_size=64, shuffle=True), epochs,
        lambda m, b: F.cross_entropy(m(b["image"]), b["label"]))
    teacher.eval()

    def kd(m, b):
        with torch.no_grad():
            soft = F.softmax(teacher(b["partner_image"]) / T, dim=1)
        logits = m(b["image"])
        distill = F.kl_div(F.log_softmax(logits / T, dim=1), soft, reduction="batchmean")
        return (1 - alpha) * F.cross_entropy(logits, b["label"]) + alpha * T * T * distill

    partners = bench.partners(ms, seed=seed)  # adds partner_image / partner_label to every batch
    fit(student, DataLoader(rgb, batch_size=64, shuffle=True, collate_fn=partners), epochs, kd)
    return {"teacher_oa": accuracy(teacher, bench.split("ms", "val")),
            "student_oa": accuracy(student, bench.split("rgb", "test"))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scores = main(args.dataset, epochs=args.epochs, seed=args.seed)
    print(f"teacher (MS) val OA {scores['teacher_oa']:.3f}; student (RGB, KD) test OA {scores['student_oa']:.3f}")
