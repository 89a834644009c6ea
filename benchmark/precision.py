"""Numerical precision of the loss functions under mixed precision (``--precision bf16``)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

LossFn = TypeVar("LossFn", bound=Callable[..., Any])
_LOW = (torch.float16, torch.bfloat16)


def float32_loss(fn: LossFn) -> LossFn:
    """Decorate a loss function so that it computes in at least float32, even under autocast.

    Its float16/bfloat16 tensor arguments are cast to float32 (float64 stays float64) and autocast
    is switched off inside, so that matrix products (relation matrices, angles, covariances) are
    not cast back to bf16 either. Softmax, KL and distances between near-equal quantities are
    small differences of large numbers: in bf16 (about 3 significant digits) they lose most of
    their digits, and the CPU's autocast, unlike CUDA's, leaves even softmax and KL in bf16.
    Gradients flow through the casts to the bf16 network outputs.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_up(a) for a in args)
        kwargs = {k: _up(v) for k, v in kwargs.items()}
        devices = {a.device.type for a in (*args, *kwargs.values()) if isinstance(a, Tensor)}
        with contextlib.ExitStack() as stack:
            for device in sorted(devices):
                stack.enter_context(torch.autocast(device, enabled=False))
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def autocast(device: torch.device | str, precision: str):
    """bf16 autocast on ``device`` when ``precision`` is ``bf16``; a no-op context for ``fp32``."""
    kind = device if isinstance(device, str) else device.type
    return torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=precision == "bf16")


def _up(value: Any) -> Any:
    return value.float() if isinstance(value, Tensor) and value.dtype in _LOW else value
