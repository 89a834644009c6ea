"""SemBridge's Semantic-aware Knowledge Alignment (SKA): attention transport plans and CORAL alignment losses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ackd_bench.benchmark.precision import float32_loss


#: CORAL forms: ``deep`` (Sun & Saenko) and ``authors`` (the SemBridge code's scatter version).
CORAL_FORMS = ("deep", "authors")


@float32_loss
def coral_loss(a: Tensor, b: Tensor, *, form: str = "deep") -> Tensor:
    """CORAL distance between the second-order statistics of two sets of samples.

    ``deep`` (default): Deep CORAL (Sun & Saenko 2016, eq. 1), ‖Cov(a) − Cov(b)‖²_F / (4 d²), with
    Cov the unbiased sample covariance Xcᵀ Xc / (N − 1) of the column-centred rows: it estimates a
    quantity of the two distributions that does not depend on the batch size.

    ``authors``: the SemBridge code's version (``utils/loss_kd.py``; official-code-notes §4),
    mean((S_a − S_b)²) / (4 d) = ‖S_a − S_b‖²_F / (4 d³) with S = Xcᵀ Xc the un-normalised scatter,
    i.e. Deep CORAL × (N − 1)² / d: it grows with the square of the batch size (30–250× Deep
    CORAL at batch 256 and d = 256…2048). Both inputs must have the same number of rows N, as in
    the authors' code, where they are the batch's teacher and student samples.

    Computed in float32 at least, even under autocast (@float32_loss).

    Args:
        a: (N, d) samples, N ≥ 2.
        b: (M, d) samples, M ≥ 2; M may differ from N for ``deep``, must equal N for ``authors``.
        form: ``deep`` or ``authors``.

    Returns:
        0-d tensor.
    """
    if form not in CORAL_FORMS:
        raise ValueError(f"form must be one of {CORAL_FORMS}, got {form!r}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"coral_loss needs (N, d) and (M, d) inputs, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"coral_loss needs at least 2 rows per input, got {a.shape[0]} and {b.shape[0]}")
    if form == "authors" and a.shape[0] != b.shape[0]:
        raise ValueError(f"the authors' CORAL compares scatters of equal row counts, got {a.shape[0]} and {b.shape[0]}")
    d = a.shape[1]

    def cov(x: Tensor) -> Tensor:
        xc = x - x.mean(0, keepdim=True)
        return xc.T @ xc / (x.shape[0] - 1)

    deep = (cov(a) - cov(b)).square().sum() / (4 * d * d)
    return deep if form == "deep" else deep * ((a.shape[0] - 1) ** 2 / d)


def attention_plan(q: Tensor, k: Tensor) -> Tensor:
    """Transport plan π = softmax(q kᵀ / √d), row-wise: (..., n, d), (..., m, d) -> (..., n, m).

    Why this is an optimal-transport plan (paper-notes §2.2, the paper's Lagrangian argument):
    take the entropic OT problem min_π ⟨π, C⟩ − ε H(π), H(π) = −Σ π_ij (log π_ij − 1), with only
    the row constraint Σ_j π_ij = 1 (each query position ships unit mass; the column marginal is
    free). Its Lagrangian L = ⟨π, C⟩ − ε H(π) − Σ_i λ_i (Σ_j π_ij − 1) is stationary at
    C_ij + ε log π_ij − λ_i = 0, i.e. π_ij = exp(λ_i/ε) exp(−C_ij/ε); the multiplier λ_i only
    normalises row i, hence π_ij = softmax_j(−C_ij/ε). With the learned cost C_ij = −q_i·k_j and
    ε = √d this is scaled dot-product attention: the cost and the regulariser are learned instead
    of hand-crafted, and no Sinkhorn iterations are needed because there is one constraint.
    """
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)


def cross_modal_plan(q_a: Tensor, k_b: Tensor, w_a: Tensor, w_b: Tensor) -> Tensor:
    """Cross-modal plan from modality a's tokens (rows) to modality b's tokens (columns).

    Π_ij = w_a,i · w_b,j exp(q_a,i·k_b,j/√d) / Σ_l w_b,l exp(q_a,i·k_b,l/√d).

    This is the solution of the entropic OT problem of `attention_plan` with the entropy taken
    *relative to the outer product w_a ⊗ w_b of the two modalities' pooled plans* (min ⟨Π, C⟩ +
    ε KL(Π ‖ w_a ⊗ w_b), row constraint Σ_j Π_ij = w_a,i, C = −q_a kᵀ_b, ε = √d): the same
    Lagrangian steps give Π_ij ∝ w_a,i w_b,j exp(−C_ij/ε), normalised per row. The paper's
    "cross-multiplied pooled plans" are thus the reference coupling, and cross-modal affinities
    move mass away from it; with uniform affinities Π = w_a ⊗ w_b exactly.

    Args:
        q_a: (..., n_a, d) queries of modality a.
        k_b: (..., n_b, d) keys of modality b.
        w_a: (..., n_a) pooled plan of modality a (a probability vector).
        w_b: (..., n_b) pooled plan of modality b.

    Returns:
        (..., n_a, n_b) plan with total mass 1 and row marginal w_a.
    """
    logits = q_a @ k_b.transpose(-2, -1) / math.sqrt(q_a.shape[-1])
    logits = logits + torch.log(w_b.clamp_min(1e-12)).unsqueeze(-2)
    return w_a.unsqueeze(-1) * torch.softmax(logits, dim=-1)


class SemanticPlanner(nn.Module):
    """SKA planner: intra-modal attention plans, a cross-modal plan from both, plan-refined tokens.

    Steps (B batch, H heads, tokens flattened from the last-stage maps):

    1. z_t = LN(P_t x_t), z_s = LN(P_s x_s): bias-free linear projections of the teacher's C_t
       and the student's C_s channels to a common ``dim`` (any backbone pair: ShuffleNet's 1024
       channels, 1×1 maps, n_t ≠ n_s). LayerNorm without affine parameters fixes the tokens' scale,
       so the trainable heads cannot shrink both sides to zero to make CORAL vanish.
    2. Intra-modal plans π_t = softmax(Q_t K_tᵀ/√d_h) (n_t × n_t per head), π_s likewise.
    3. Pooled plans w_t, w_s: each plan averaged over its query axis (paper's mean pooling),
       i.e. the mass each token receives, a probability vector over the modality's tokens.
    4. Cross-modal plans (`cross_modal_plan`), one per direction, each with reference coupling
       w_t ⊗ w_s (the outer product of the pooled plans) and cross-modal costs −q·k:
       Π_{t→s} (teacher queries, student keys) and Π_{s→t}. Their *column* marginals are the
       cross-modal token weights: c_s = Σ_i Π_{t→s}[i, :] is the teacher mass landing on each
       student token, c_t = Σ_i Π_{s→t}[i, :] the student mass landing on each teacher token
       (averaged over heads; each sums to 1). The authors reduced the outer product w_t ⊗ w_s
       itself, whose marginals are w_t and w_s again, so their weights never mixed the modalities
       (official-code-notes §4, §8 item 6); here c_s depends on the teacher's tokens and c_t on
       the student's.
    5. Refined tokens: student_refined = n_s c_s ⊙ z_s, teacher_refined = n_t c_t ⊙ z_t (weights
       scaled to mean 1, so uniform weights leave the tokens unchanged); pooled embeddings are the
       plan-weighted means Σ_i c_i z_i. The content stays each modality's own, so the CORAL losses
       align student features to teacher features rather than letting teacher content leak into
       the student's side.

    The teacher map is detached here: no gradient reaches a teacher backbone, but P_t and the
    teacher's query/key heads are trainable (the SemBridge method freezes P_t, so the teacher's
    tokens are a fixed target that cannot be collapsed to make CORAL vanish). A single token
    (1×1 map) has the trivial plan 1.

    Args:
        teacher_channels: C_t of the teacher's last feature map.
        student_channels: C_s of the student's last feature map.
        dim: common token dimension (default 256).
        heads: attention heads (default 8; ``dim`` must be divisible by it).
    """

    def __init__(self, teacher_channels: int, student_channels: int, dim: int = 256, heads: int = 8) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.dim, self.heads = dim, heads
        self.proj_t = nn.Linear(teacher_channels, dim, bias=False)
        self.proj_s = nn.Linear(student_channels, dim, bias=False)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.qk_t = nn.Linear(dim, 2 * dim, bias=False)
        self.qk_s = nn.Linear(dim, 2 * dim, bias=False)

    def tokens(self, teacher_map: Tensor, student_map: Tensor) -> tuple[Tensor, Tensor]:
        """Projected tokens: (B, C_t, h_t, w_t), (B, C_s, h_s, w_s) -> (B, n_t, dim), (B, n_s, dim)."""
        for name, m in (("teacher_map", teacher_map), ("student_map", student_map)):
            if m.ndim != 4:
                raise ValueError(f"{name} must be (B, C, h, w), got shape {tuple(m.shape)}")
        z_t = self.norm(self.proj_t(teacher_map.detach().flatten(2).transpose(1, 2)))
        z_s = self.norm(self.proj_s(student_map.flatten(2).transpose(1, 2)))
        return z_t, z_s

    def _heads(self, qk: nn.Linear, z: Tensor) -> tuple[Tensor, Tensor]:
        """(B, n, dim) -> queries and keys (B, H, n, dim/H)."""
        b, n, _ = z.shape
        q, k = qk(z).view(b, n, 2, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        return q, k

    def forward(self, teacher_map: Tensor, student_map: Tensor) -> dict[str, Tensor]:
        """Refined tokens and pooled embeddings of both modalities.

        Returns:
            ``student_refined`` (B, n_s, dim), ``teacher_refined`` (B, n_t, dim),
            ``student_pooled`` (B, dim), ``teacher_pooled`` (B, dim), and the cross-modal token
            weights ``student_weights`` (B, n_s), ``teacher_weights`` (B, n_t) (each row sums to 1).
        """
        z_t, z_s = self.tokens(teacher_map, student_map)
        q_t, k_t = self._heads(self.qk_t, z_t)
        q_s, k_s = self._heads(self.qk_s, z_s)
        w_t = attention_plan(q_t, k_t).mean(-2)  # (B, H, n_t)
        w_s = attention_plan(q_s, k_s).mean(-2)  # (B, H, n_s)
        c_s = cross_modal_plan(q_t, k_s, w_t, w_s).sum(-2).mean(1)  # (B, n_s)
        c_t = cross_modal_plan(q_s, k_t, w_s, w_t).sum(-2).mean(1)  # (B, n_t)
        return {
            "student_refined": z_s * (c_s * z_s.shape[1]).unsqueeze(-1),
            "teacher_refined": z_t * (c_t * z_t.shape[1]).unsqueeze(-1),
            "student_pooled": (c_s.unsqueeze(-1) * z_s).sum(1),
            "teacher_pooled": (c_t.unsqueeze(-1) * z_t).sum(1),
            "student_weights": c_s,
            "teacher_weights": c_t,
        }

    @staticmethod
    def ot_losses(out: dict[str, Tensor], *, form: str = "deep") -> dict[str, Tensor]:
        """L_ot1: CORAL of the refined tokens; ``ot2_planner``: CORAL of the plan-pooled tokens.

        ``deep``: L_ot1 over rows batch × tokens, dim × dim covariances (the two sides may have
        different token counts). ``authors``: as the authors' code, each sample's tokens flattened
        into one (n·dim)-vector, rows = the batch, scatter CORAL (:func:`coral_loss`); this needs
        equal token counts, which the authors' code assumes (it fails otherwise). With unequal
        counts the token-row Deep CORAL is scaled by the factor (B − 1)² / (n_s·dim) that the
        authors' form would carry at this batch size and the student's token grid.

        ``ot2_planner`` is this package's earlier L_ot2 (``--ot2-space planner``): the
        plan-weighted pooled projected tokens. The authors' L_ot2 is on the backbones' pooled
        embeddings and is computed by the method (``--ot2-space backbone``). Needs a batch of 2.
        """
        s_ref, t_ref = out["student_refined"], out["teacher_refined"]
        if form == "deep":
            ot1 = coral_loss(s_ref.flatten(0, 1), t_ref.flatten(0, 1))
        elif s_ref.shape[1] == t_ref.shape[1]:
            ot1 = coral_loss(s_ref.flatten(1), t_ref.flatten(1), form="authors")
        else:
            ot1 = coral_loss(s_ref.flatten(0, 1), t_ref.flatten(0, 1)) * (
                (s_ref.shape[0] - 1) ** 2 / (s_ref.shape[1] * s_ref.shape[2]))
        return {"ot1": ot1, "ot2_planner": coral_loss(out["student_pooled"], out["teacher_pooled"], form=form)}


class SinkhornPlanner(SemanticPlanner):
    """``planner=sinkhorn``: an explicit entropic OT plan between student and teacher tokens (POT).

    Per sample, Π = the log-domain Sinkhorn plan (POT, ``ot.batch.solve_batch``, all samples of a
    batch in one call) between uniform marginals 1/n_s and 1/n_t with the cost
    M_ij = 1 − cos(z_s,i, z_t,j) ∈ [0, 2] on the projected tokens (bounded, so one ``reg`` fits every
    backbone pair) and uniform marginals. ``teacher_refined`` = n_s Π z_t is the barycentric
    projection of the teacher's tokens onto the student's positions, so here it has shape
    (B, n_s, dim); ``student_refined`` is the student's tokens z_s. Pooled embeddings are token means.

    The plan is computed without gradient: by the envelope theorem the OT value's gradient in M is
    Π itself, and differentiating through a truncated iteration adds cost but no useful signal;
    gradients still reach the student map and both projections through z_s and z_t. This variant
    has no query/key heads.

    Args:
        reg: entropic regularisation on the cosine cost (default 0.05: a sharp but stable plan).
        num_iter: fixed Sinkhorn iteration budget (default 50, no early stop); the column marginal
            is exact after the last update, the row marginal is within ~1e-3 on small token grids.
    """

    def __init__(self, teacher_channels: int, student_channels: int, dim: int = 256, heads: int = 8,
                 *, reg: float = 0.05, num_iter: int = 50) -> None:
        super().__init__(teacher_channels, student_channels, dim, heads)
        del self.qk_t, self.qk_s  # unused: the cost is fixed, not learned
        self.reg, self.num_iter = reg, num_iter

    def transport_plan(self, z_t: Tensor, z_s: Tensor) -> Tensor:
        """Entropic plans (B, n_s, n_t), each with marginals 1/n_s (rows) and 1/n_t (columns)."""
        import ot.batch

        with torch.no_grad(), torch.autocast(z_s.device.type, enabled=False):
            zs, zt = F.normalize(z_s.float(), dim=-1), F.normalize(z_t.float(), dim=-1)
            cost = 1 - zs @ zt.transpose(1, 2)
            # All samples at once (POT's batched log-domain Sinkhorn; uniform marginals by default);
            # tol=0 keeps every sample at exactly num_iter iterations, the fixed budget.
            plans = ot.batch.solve_batch(cost, reg=self.reg, method="log_sinkhorn", max_iter=self.num_iter,
                                         tol=0.0, grad="detach").plan
        return plans.to(z_t.dtype)

    def forward(self, teacher_map: Tensor, student_map: Tensor) -> dict[str, Tensor]:
        """Student tokens and teacher tokens transported to the student's positions.

        Returns:
            ``student_refined`` (B, n_s, dim), ``teacher_refined`` (B, n_s, dim),
            ``student_pooled`` (B, dim), ``teacher_pooled`` (B, dim), ``plan`` (B, n_s, n_t).
        """
        z_t, z_s = self.tokens(teacher_map, student_map)
        plan = self.transport_plan(z_t, z_s)
        moved = z_s.shape[1] * plan @ z_t
        return {
            "student_refined": z_s,
            "teacher_refined": moved,
            "student_pooled": z_s.mean(1),
            "teacher_pooled": moved.mean(1),
            "plan": plan,
        }
