"""C²KD (Huo et al.): bidirectional distillation through proxy heads with on-the-fly sample selection.

What the official code (huofushuo/C2KD, ``ave/utils/helper.py::train_network_distill``) optimises,
per side, all KLs at temperature 1 with batch-mean reduction and weight 1:

* student side: CE(z_s, y) + KL(z_s → proxy_s) + KL(proxy_s → z_s) + OFSD(proxy_t → proxy_s)
* teacher side: CE(z_t, y) + KL(z_t → proxy_t) + KL(proxy_t → z_t) + OFSD(proxy_s → proxy_t)

where ``a → b`` trains ``b`` towards the detached ``a``, and OFSD (on-the-fly selection
distillation) is a KL over the non-target classes only, kept for the samples whose proxy
logits agree in rank (Kendall τ > krc) and averaged over the whole batch.

Deviation (benchmark rule: one frozen teacher reused by every method): the teacher backbone is
not fine-tuned, so the teacher's CE and KL(proxy_t → z_t) have no trainable parameter and are
dropped; bidirectional distillation updates the teacher-side *proxy* only. Other choices:

* Proxies read the pooled last-stage features (the official heads read layer3's map, which
  ``ModelOutput`` does not expose); their shape follows the official ``Tea``/``Stu``:
  Linear(D, 256) + BatchNorm + LeakyReLU(0.1) + Linear(256, K), the 1×1 conv on a pooled map
  being a linear layer.
* The non-target KL removes the target class from both softmaxes (−1000 mask, as DKD). The
  official ``ntkl`` multiplies the target logit by 0, which leaves the target class in the
  softmax with logit 0; the paper describes a non-target-class distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ackd_bench.baselines.kd import kd_loss
from ackd_bench.benchmark.method import Batch, DataInfo, Method, class_logits, register_method
from ackd_bench.benchmark.models import Classifier
from ackd_bench.benchmark.precision import float32_loss


def kendall_tau(a: Tensor, b: Tensor) -> Tensor:
    """Kendall's τ-b between ``a[i]`` and ``b[i]`` for every row, vectorised over the batch.

    ``τ_b = Σ_{j<k} s^a_jk s^b_jk / sqrt(Σ_{j<k} |s^a_jk| · Σ_{j<k} |s^b_jk|)`` with
    ``s^x_jk = sign(x_j − x_k)``: concordant minus discordant pairs over the pairs not tied in
    each vector, equal to ``scipy.stats.kendalltau`` (default variant 'b'). The sums run over
    the full (K, K) sign matrices; both numerator and denominator count every pair twice.

    Args:
        a: (B, K).
        b: (B, K).

    Returns:
        (B,) τ in [−1, 1]; NaN for a constant row (as scipy), which never passes a ``τ > krc`` test.
    """
    sign_a = torch.sign(a.unsqueeze(2) - a.unsqueeze(1))  # (B, K, K)
    sign_b = torch.sign(b.unsqueeze(2) - b.unsqueeze(1))
    concord = (sign_a * sign_b).sum(dim=(1, 2))
    untied = sign_a.abs().sum(dim=(1, 2)) * sign_b.abs().sum(dim=(1, 2))
    return concord / untied.sqrt()


@float32_loss
def non_target_kl(logits_s: Tensor, logits_t: Tensor, target: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Per-sample KL(p̂_t ‖ p̂_s) over the K − 1 non-target classes (target logit masked with −1000).

    Args:
        logits_s: (B, K) logits being trained.
        logits_t: (B, K) reference logits (detach them if they must not learn).
        target: (B,) int64 class ids.
        temperature: softmax temperature (C²KD uses 1).

    Returns:
        (B,) KL per sample (in at least float32, whatever the logits' dtype).
    """
    push = 1000.0 * F.one_hot(target, logits_s.shape[1])
    log_p_s = F.log_softmax(logits_s / temperature - push, dim=1)
    log_p_t = F.log_softmax(logits_t / temperature - push, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)


def ofsd_loss(logits_s: Tensor, logits_t: Tensor, target: Tensor, selected: Tensor, *,
              temperature: float = 1.0) -> Tensor:
    """On-the-fly selection distillation: ``mean_b(selected_b · non_target_kl_b)`` over the whole batch.

    Args:
        logits_s: (B, K) logits being trained.
        logits_t: (B, K) reference logits.
        target: (B,) class ids.
        selected: (B,) bool, samples whose proxies agree in rank (Kendall τ > krc).
        temperature: softmax temperature (C²KD uses 1).

    Returns:
        0-d tensor; 0 when no sample is selected.
    """
    kl = non_target_kl(logits_s, logits_t, target, temperature=temperature)
    return (selected.to(kl.dtype) * kl).mean()


class ProxyHead(nn.Module):
    """A proxy classifier on pooled features (official ``Tea``/``Stu`` in ``ave/utils/module.py``)."""

    def __init__(self, in_features: int, n_classes: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


@dataclass(frozen=True)
class C2KDConfig:
    """C²KD hyper-parameters.

    Source: official ``main_overlap_tag.py`` (``--krc 0.0``) and ``utils/helper.py`` (every term
    weight 1, KL at temperature 1 with ``KLDivLoss(reduction='batchmean')``); proxy width 256 from
    ``utils/module.py`` (``conv_1x1_bn(256, 256)``).
    """

    ce_weight: float = 1.0
    kd_weight: float = 1.0
    ofsd_weight: float = 1.0
    krc: float = 0.0
    temperature: float = 1.0
    proxy_hidden: int = 256


@register_method("c2kd")
class C2KD(Method):
    """CE + student↔proxy KLs + teacher→proxy KL + Kendall-selected non-target KL between the proxies."""

    description = "C²KD: bidirectional proxy distillation with on-the-fly Kendall-τ sample selection."
    paper = ("Huo, Xu, Guo, Wang, Guo. C2KD: Bridging the Modality Gap for Cross-Modal Knowledge "
             "Distillation. CVPR 2024, pp. 16006-16015")
    Config = C2KDConfig

    def __init__(self, student: Classifier, teacher: Classifier | None, info: DataInfo, cfg: C2KDConfig) -> None:
        super().__init__(student, teacher, info, cfg)
        self.student_proxy = ProxyHead(student.num_features, info.n_classes, cfg.proxy_hidden)
        self.teacher_proxy = ProxyHead(teacher.num_features, info.n_classes, cfg.proxy_hidden)
        self.last_selected_fraction: Tensor | None = None  # diagnostic: share of samples OFSD kept

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        T, y = cfg.temperature, batch.labels
        out_s = self.student_out(batch)
        out_t = self.teacher_out(batch)
        z_s = out_s.logits
        z_t = class_logits(out_t.logits, self.info.teacher_multilabel)
        proxy_s = self.student_proxy(out_s.features)
        proxy_t = self.teacher_proxy(out_t.features)

        with torch.no_grad():
            selected = kendall_tau(proxy_t, proxy_s) > cfg.krc
            self.last_selected_fraction = selected.float().mean()

        return {
            "ce": cfg.ce_weight * F.cross_entropy(z_s, y),
            # student <-> its proxy (both directions; each side learns from the other's detached output)
            "kd_student_from_proxy": cfg.kd_weight * kd_loss(z_s, proxy_s.detach(), temperature=T),
            "kd_proxy_from_student": cfg.kd_weight * kd_loss(proxy_s, z_s.detach(), temperature=T),
            # frozen teacher -> its proxy (the reverse direction would need a trainable teacher)
            "kd_proxy_from_teacher": cfg.kd_weight * kd_loss(proxy_t, z_t, temperature=T),
            # cross-modal, non-target classes, selected samples only, in both directions
            "ofsd_student_proxy": cfg.ofsd_weight * ofsd_loss(proxy_s, proxy_t.detach(), y, selected, temperature=T),
            "ofsd_teacher_proxy": cfg.ofsd_weight * ofsd_loss(proxy_t, proxy_s.detach(), y, selected, temperature=T),
        }
