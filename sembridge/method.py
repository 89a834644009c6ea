"""SemBridge as a plug-in over any KD method: Student-Friendly Matching + Semantic-aware Knowledge Alignment.

``sembridge`` is SemBridge over Vanilla KD (the paper's headline setting); ``sembridge+<base>`` is
SemBridge over any registered method (``sembridge+dkd``, ``sembridge+rkd``, ...). A run:

1. ``prepare``: the frozen teacher's logits for the whole MS training gallery (computed once, or
   taken from the run's teacher gallery, :mod:`benchmark.gallery`: the teacher is frozen and
   sees no augmentation); the SSM matcher (trained once per dataset fingerprint and seed, then
   cached) embeds every MS and RGB training chip and each RGB chip gets its top-1 cosine MS chip
   of the same class (``matching.initial_match``).
2. Training: each student chip is taught by its current partner. At the curriculum epochs
   e_t = e0 + Σ(Δe + eμ(i−1)), scaled to the profile's length (``matching.rematch_epochs``), DynM
   re-matches every student chip to the same-class MS chip of minimal KL(teacher ‖ student) at
   T = 3 (``matching.rematch_students``); the share of changed partners and the time are logged.
3. Loss: the base method's terms plus the SKA alignment of ``planner.SemanticPlanner``.
   L_ot1 is CORAL between the plan-refined tokens; L_ot2 CORAL between the backbones' pooled
   embeddings (``ot2_space="backbone"``, the authors' ``emb`` index 4; projected to the planner's
   width by P_t, P_s when the two widths differ, which the authors' code cannot run) or, with
   ``ot2_space="planner"``, between the plan-pooled projected tokens (this package's earlier
   variant: on a 1×1 teacher map it equals L_ot1 exactly, so the term counted twice).

   ``paper`` (arXiv 2511.08901 §Method): L_task + λ1·L_kd + λ2·(L_ot1 + L_ot2), λ2 = 1 − λ1, with
   the base's own weighting inside L_task and L_kd and Deep CORAL (÷ 4d²).

   ``official``, the authors' effective loss, term by term (weirl-922/ACKD at f836212;
   official-code-notes §2.1, §2.2, §4):

   * 0.3·CE(student logits, labels) (``train.py`` recombines the distiller's ``ce`` with
     ``lam_task`` = 0.3 from ``main_config.py`` and throws the distiller's own loss away);
   * 0.4·L_kd (``lam_kd`` = 0.4), L_kd being the distiller's *unweighted* ``kd`` term
     (``Distillers/*.py`` with ``cfg.py``), :data:`AUTHORS_KD`: ``kd`` → their ``CKD``, KL(softmax(z_t/3)
     ‖ softmax(z_s/3)), batch mean, no T²; ``lskd`` → z-scored logits, KL at T = 3, ×T²;
     ``dkd`` → min(epoch/warm-up, 1)·(TCKD + 8·NCKD)·T² at T = 4; ``ctkd`` → KL at the learnable τ,
     no T²; ``rkd`` → 0.1·(25·L_dist + 50·L_angle) (with the student's gradient, which their
     ``.detach()`` removed); ``logits`` → 0.01·MSE(z_s, z_t). Other bases have no counterpart in
     their code and are refused;
   * 0.3·0.01·(L_ot1 + L_ot2) (``lam_ot``, ``ot_weights``) with their scatter CORAL,
     ‖S_a − S_b‖²_F / (4d³) = Deep CORAL × (B − 1)²/d (``utils/loss_kd.py``): L_ot1 on each
     sample's flattened refined tokens (d = n·dim, rows = the batch), L_ot2 on the pooled
     embeddings (d = 512 for ResNet-18). See ``planner.SemanticPlanner.ot_losses`` for token
     grids of unequal size.
4. ``diagnostics``: transport costs between the teacher's and the student's distributions of
   matched pairs (random same-class vs SSM vs DynM partners, and the true co-located pairs of
   paired and partial builds) at the start and end of training, in the class-probability space
   and the matcher's space (which the matching itself minimises) and in the latent truth, a space
   nothing optimises (see :func:`pairing_costs`); the matcher's hit@k against the true pairs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.data import (ModalityData, latent_vectors, pair_carrying_class, pair_same_class,
                                       partner_quality)
from ackd_bench.baselines.kd import KD, kd_loss
from ackd_bench.baselines.lskd import lskd_loss
from ackd_bench.benchmark.method import (Batch, DataInfo, Method, MethodError, class_logits, register_method,
                                         register_plugin)
from ackd_bench.benchmark.models import Classifier
from ackd_bench.benchmark.precision import autocast, float32_loss
from ackd_bench.sembridge.matcher import MatcherConfig, get_matcher, matcher_embeddings
from ackd_bench.sembridge.matching import (OFFICIAL_CURRICULA, changed_fraction, initial_match, rematch_epochs,
                                           rematch_students)
from ackd_bench.sembridge.planner import SemanticPlanner, SinkhornPlanner, coral_loss
from ackd_bench.sembridge.transport import transport_cost

PAPER = ("Wei, Yao, Yang, Wang, Gao, Li. Asymmetric Cross-Modal Knowledge Distillation: Bridging Modalities "
         "with Weak Semantic Consistency (SemBridge). AAAI 2026. arXiv:2511.08901")

#: Loss terms that are the plain supervised task loss; every other term of a base method is distillation.
TASK_TERMS = ("ce", "bce")

#: The authors' code's weights (official-code-notes §4 "Weights"): lam_task, lam_kd, lam_ot, ot_weights.
OFFICIAL_WEIGHTS = {"task": 0.3, "kd": 0.4, "ot": 0.3 * 0.01}

#: The temperature of the authors' ``CKD`` (their SemBridge logit term) and LSKD (``cfg.CKD_temp``).
AUTHORS_KD_TEMPERATURE = 3.0

#: Base methods with a distiller in the authors' code, and what its unweighted ``kd`` term is.
AUTHORS_KD = {
    "kd": "CKD: KL(softmax(z_t/3) ‖ softmax(z_s/3)), batch mean, no T²",
    "lskd": "LSKD: KL of z-scored logits at T = 3, ×T²",
    "dkd": "DKD: min(epoch/warm-up, 1)·(α·TCKD + β·NCKD)·T², α = 1, β = 8, T = 4",
    "ctkd": "CTKD: KL at the learnable temperature τ, no T²",
    "rkd": "RKD: 0.1·(25·L_dist + 50·L_angle)",
    "logits": "Logits: 0.01·MSE(z_s, z_t), mean over batch × classes",
}

# Names of the R, G, B bands in the MS band list, by naming convention (Sentinel-2 L2A, Landsat-like short
# names, Earth Search's common names).
_RGB_BAND_NAMES = (("B04", "B4", "red"), ("B03", "B3", "green"), ("B02", "B2", "blue"))


@dataclass(frozen=True)
class SemBridgeOptions:
    """SemBridge's own options (a ``sembridge+<base>`` method also takes the base's options).

    Attributes:
        weighting: ``paper`` (L_task + λ1·L_kd + (1 − λ1)·(L_ot1 + L_ot2), with the base's own
            weighting of its task and distillation terms inside L_task and L_kd, Deep CORAL) or
            ``official`` (the authors' effective loss, term by term in the module docstring:
            0.3·CE + 0.4·their unweighted kd term + 0.003·(L_ot1 + L_ot2) with their scatter CORAL).
        lambda_kd: λ1 of the ``paper`` weighting. The paper's values were not recovered
            (paper-notes §2.3); 4/7 keeps the authors' code's KD : alignment ratio 0.4 : 0.3
            under λ1 + λ2 = 1.
        ot_scale: extra factor on L_ot1 + L_ot2 (the authors' ``ot_weights``; 1 here because
            our CORAL is Deep CORAL's, not their batch-size-dependent scatter version).
        ssm: initial partners from the SSM matcher (off: a fixed random same-class partner each).
        dynm: DynM re-matching at the curriculum epochs (off: partners never change).
        ot1, ot2: the alignment losses on plan-refined tokens / pooled embeddings.
        ot2_space: where L_ot2 compares the two modalities: ``backbone`` (the backbones' pooled
            embeddings, as the authors' code) or ``planner`` (the plan-pooled projected tokens).
        planner: ``attention`` (the paper's learned attention plans) or ``sinkhorn`` (POT entropic
            OT between teacher and student tokens).
        planner_dim, planner_heads: token dimension and heads of the planner.
        match_temperature: T of DynM's KL and of the diagnostic's probability space (authors: 3).
        curriculum: which of the authors' re-matching schedules (``s2s_eu``, ``s2s_cn``,
            ``m2s_gl``) to scale to the profile's epochs.
        matcher_arch, matcher_epochs: the SSM matcher's backbone and training epochs.
        diagnostic_samples: students subsampled for the transport-cost diagnostic (0: off).
    """

    weighting: str = "paper"
    lambda_kd: float = 4 / 7
    ot_scale: float = 1.0
    ssm: bool = True
    dynm: bool = True
    ot1: bool = True
    ot2: bool = True
    ot2_space: str = "backbone"
    planner: str = "attention"
    planner_dim: int = 256
    planner_heads: int = 8
    match_temperature: float = 3.0
    curriculum: str = "s2s_eu"
    matcher_arch: str = "resnet18"
    matcher_epochs: int = 10
    diagnostic_samples: int = 500

    def __post_init__(self) -> None:
        if self.weighting not in ("paper", "official"):
            raise MethodError(f"weighting must be 'paper' or 'official', got {self.weighting!r}")
        if not 0.0 <= self.lambda_kd <= 1.0:
            raise MethodError(f"lambda_kd must lie in [0, 1] (λ2 = 1 − λ1), got {self.lambda_kd}")
        if self.ot2_space not in ("backbone", "planner"):
            raise MethodError(f"ot2_space must be 'backbone' or 'planner', got {self.ot2_space!r}")
        if self.planner not in ("attention", "sinkhorn"):
            raise MethodError(f"planner must be 'attention' or 'sinkhorn', got {self.planner!r}")
        if self.curriculum not in OFFICIAL_CURRICULA:
            raise MethodError(f"unknown curriculum {self.curriculum!r}; known: {', '.join(OFFICIAL_CURRICULA)}")
        if self.match_temperature <= 0 or self.ot_scale < 0 or self.diagnostic_samples < 0:
            raise MethodError("match_temperature must be > 0, ot_scale and diagnostic_samples >= 0")


_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(SemBridgeOptions))


def rgb_band_index(bands: list[str] | tuple[str, ...]) -> tuple[int, int, int]:
    """Positions of the red, green and blue bands in an MS band list (for the matcher's pseudo-RGB).

    Raises:
        MethodError: a colour band is missing (then SSM cannot run: ``-o ssm=false`` runs without it).
    """
    lower = [b.lower() for b in bands]
    out = []
    for names in _RGB_BAND_NAMES:
        hit = next((lower.index(n.lower()) for n in names if n.lower() in lower), None)
        if hit is None:
            raise MethodError(f"the MS bands {list(bands)} have no {names[0]}/{names[-1]} band, so SemBridge's "
                              "matcher cannot make pseudo-RGB; run with -o ssm=false")
        out.append(hit)
    return out[0], out[1], out[2]


@torch.no_grad()
def all_logits(model: Classifier, data: ModalityData, px: int, *, batch: int = 512, precision: str = "fp32",
               channels_last: bool = False) -> Tensor:
    """Logits of every training chip of ``data`` (no augmentation, eval mode), float32, in row order;
    the network runs as the run computes (``precision``, ``channels_last``)."""
    was_training = model.training
    model.eval()
    rows = torch.arange(data.x["train"].shape[0], device=data.y["train"].device)
    with autocast(data.y["train"].device, precision):
        out = torch.cat([model(data.batch("train", r, px=px, channels_last=channels_last)).logits.float()
                         for r in rows.split(batch)])
    model.train(was_training)
    return out


def pairing_costs(teacher_emb: Tensor, student_emb: Tensor, pairings: dict[str, Tensor], *, samples: int,
                  seed: int) -> dict[str, dict[str, float]]:
    """Transport costs of several pairings in one shared embedding space.

    For each pairing (partner index of every student), on one seeded subsample S of students:
    ``emd``: exact W2² (POT ``emd2``) between the empirical distributions {t_partner(i)} and {s_i},
    i ∈ S; ``sinkhorn``: the entropic estimate (POT, log-domain); ``pair``: the mean squared
    distance ‖t_partner(i) − s_i‖² of the matching itself, the cost of the coupling the pairing
    imposes (≥ ``emd``). Lower is a cheaper transfer (paper-notes §1). S is drawn from the
    students that have a partner (index ≥ 0) in every pairing, so all pairings are costed on the
    same students (on a partial build with its true pairs: the co-located students).
    """
    eligible = torch.ones(student_emb.shape[0], dtype=torch.bool)
    for partner in pairings.values():
        eligible &= partner.cpu() >= 0
    rows = torch.nonzero(eligible).flatten().numpy()
    if rows.size < 2:
        return {}
    rng = np.random.default_rng([seed, 5])
    pick = np.sort(rng.choice(rows, size=min(samples, rows.size), replace=False))
    idx = torch.from_numpy(pick).to(student_emb.device)
    s = student_emb[idx].double()
    out = {}
    for name, partner in pairings.items():
        t = teacher_emb[partner[idx].to(teacher_emb.device)].double()
        out[name] = {
            "emd": transport_cost(t, s, method="emd", max_samples=len(pick)),
            "sinkhorn": transport_cost(t, s, method="sinkhorn", max_samples=len(pick)),
            "pair": float((t - s.to(t.device)).square().sum(1).mean()),
        }
    return out


def matcher_hits(ms_emb: Tensor, rgb_emb: Tensor, student_labels: Tensor, teacher_labels: Tensor, true: Tensor,
                 *, ks: tuple[int, ...] = (1, 5, 10), teacher_sets: Tensor | None = None) -> dict[str, Any]:
    """How often the matcher ranks a student chip's true co-located MS chip among its top k.

    For every student with a true partner (``true`` ≥ 0) the candidates are the MS chips SSM
    chooses from (same class; multi-label teachers: carrying it), ranked by cosine similarity of
    the matcher's embeddings; ``hit@k`` is the share of students whose true partner is among
    the first k, ``chance@k`` its expectation for a uniformly random ranking (mean of k/|candidates|),
    ``median_rank`` the median 1-based rank of the true partner.
    """
    has = torch.nonzero(true >= 0).flatten()
    out: dict[str, Any] = {"students_with_true_partner": int(has.numel())}
    if has.numel() == 0:
        return out
    ms = F.normalize(ms_emb.float(), dim=1)
    rgb = F.normalize(rgb_emb.float(), dim=1).to(ms.device)
    ranks, sizes = [], []
    for i in has.tolist():
        k = int(student_labels[i])
        cand = (teacher_sets[:, k] > 0) if teacher_sets is not None else (teacher_labels == k)
        sim = ms @ rgb[i]
        own = sim[int(true[i])]
        # rank among the candidates (ties count against the true partner)
        ranks.append(int((sim[cand.to(sim.device)] >= own).sum()))
        sizes.append(int(cand.sum()))
    r, n = np.array(ranks), np.array(sizes)
    for k in ks:
        out[f"hit@{k}"] = float((r <= k).mean())
        out[f"chance@{k}"] = float(np.minimum(k / n, 1.0).mean())
    out["median_rank"] = float(np.median(r))
    out["median_candidates"] = float(np.median(n))
    return out


@float32_loss
def _mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error over every entry, in at least float32."""
    return F.mse_loss(a, b)


class SemBridge(Method):
    """SemBridge over a base method ``Base``: SSM + DynM partners, base loss re-weighted, SKA alignment."""

    Base: ClassVar[type[Method]]
    description = "SemBridge: SSM/DynM student-friendly matching + attention-plan CORAL alignment, over Vanilla KD."
    paper = PAPER
    is_plugin = True

    def __init__(self, student: Classifier, teacher: Classifier | None, info: DataInfo, cfg: Any) -> None:
        super().__init__(student, teacher, info, cfg)
        if teacher is None:
            raise MethodError(f"{self.name or 'sembridge'} needs a trained teacher")
        self.opts = SemBridgeOptions(**{f: getattr(cfg, f) for f in _OPTION_FIELDS})
        base_fields = [f.name for f in dataclasses.fields(self.Base.Config)]
        self.base = self.Base(student, teacher, info, self.Base.Config(**{f: getattr(cfg, f) for f in base_fields}))
        o = self.opts
        if o.weighting == "official" and self.Base.name not in AUTHORS_KD:
            raise MethodError(f"weighting 'official' reproduces the authors' code, which has no {self.Base.name!r} "
                              f"distiller (it has {', '.join(AUTHORS_KD)}); use weighting 'paper'")
        # What the RunResult records as the pairing policy (the runner reads this attribute).
        self.pairing_policy = ("sembridge: " + ("SSM top-1 cosine" if o.ssm else "fixed random")
                               + " same-class initial match, " + ("DynM min-KL re-match" if o.dynm else "no re-match"))
        self.planner = None
        if o.ot1 or o.ot2:
            planner_cls = SinkhornPlanner if o.planner == "sinkhorn" else SemanticPlanner
            self.planner = planner_cls(teacher.num_features, student.num_features, o.planner_dim, o.planner_heads)
            # The teacher is frozen, so its side of the alignment is a fixed target: a trainable teacher
            # projection could map every teacher token to near-constant vectors and make CORAL vanish.
            self.planner.proj_t.weight.requires_grad_(False)
        self.rematch_at: list[int] = []
        self._data: tuple[ModalityData, ModalityData] | None = None
        self._gallery: Tensor | None = None
        self._matcher_space: tuple[Tensor, Tensor] | None = None
        self._diag: dict[str, Any] = {}
        self._ctx: dict[str, Any] = {}

    def use_teacher_gallery(self, gallery) -> None:
        super().use_teacher_gallery(gallery)
        self.base.use_teacher_gallery(gallery)  # the base method computes the batch's teacher outputs

    # ---- matching ---------------------------------------------------------------------------------

    def prepare(self, student_data: ModalityData, teacher_data: ModalityData | None, ctx: dict[str, Any]) -> None:
        if teacher_data is None:
            raise MethodError("SemBridge needs the teacher's (MS) data")
        o, seed = self.opts, int(ctx.get("seed", 0))
        self._data, self._ctx = (student_data, teacher_data), dict(ctx)
        t0 = time.perf_counter()
        cached = self.teacher_gallery
        run_as = {"precision": ctx.get("precision", "fp32"), "channels_last": bool(ctx.get("channels_last"))}
        teacher_logits = (cached.logits.float() if cached is not None
                          else all_logits(self.teacher, teacher_data, ctx["teacher_px"], **run_as))
        self._gallery = class_logits(teacher_logits, self.info.teacher_multilabel)
        sets = teacher_data.sets["train"] if teacher_data.sets is not None else None
        y_s, y_t = student_data.y["train"], teacher_data.y["train"]
        gen = torch.Generator().manual_seed(seed + 7919)
        random = (pair_carrying_class(y_s, sets, gen) if sets is not None else pair_same_class(y_s, y_t, gen))
        matcher_meta: dict[str, Any] = {}
        if o.ssm:
            bands = rgb_band_index(ctx.get("teacher_bands") or [])
            fingerprint = ctx.get("fingerprint")
            if not fingerprint:
                raise MethodError("SemBridge's SSM needs the dataset fingerprint to cache its matcher")
            mcfg = MatcherConfig(arch=o.matcher_arch, epochs=o.matcher_epochs)
            device = teacher_data.y["train"].device
            # Training the matcher reseeds torch's global generator; a cached matcher does not. Forking
            # keeps the student's run identical either way.
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                matcher, matcher_meta = get_matcher(fingerprint, teacher_data, student_data, bands, mcfg, seed=seed,
                                                    px=ctx["teacher_px"], progress=bool(ctx.get("progress")),
                                                    **run_as)
            ms_emb, rgb_emb = matcher_embeddings(matcher, teacher_data, student_data, bands, px=ctx["teacher_px"],
                                                 **run_as)
            del matcher
            self._matcher_space = (ms_emb, rgb_emb)
            start = initial_match(rgb_emb, y_s, ms_emb, y_t, teacher_sets=sets)
            if ctx.get("true_partners") is not None:  # paired/partial builds: does SSM find the co-located chip?
                matcher_meta = dict(matcher_meta)
                matcher_meta["true_pair_hits"] = matcher_hits(ms_emb, rgb_emb, y_s, y_t, ctx["true_partners"],
                                                              teacher_sets=sets)
        else:
            start = random
        # Buffers (checkpointed): the current partners and the initial ones (for the diagnostics).
        self.register_buffer("partner", start.clone())
        self.register_buffer("initial_partner", start.clone())
        self.register_buffer("random_partner", random.clone())
        cur = OFFICIAL_CURRICULA[o.curriculum]
        self.rematch_at = (rematch_epochs(int(ctx["epochs"]), e0=cur.e0, delta=cur.delta, mu=cur.mu,
                                          reference_epochs=cur.reference_epochs, max_rematches=cur.max_rematches)
                           if o.dynm else [])
        self._diag = {
            "matching": {"ssm": o.ssm, "dynm": o.dynm, "rematch_epochs": self.rematch_at,
                         "initial_distinct_partners": int(torch.unique(start).numel()),
                         "students": int(start.numel()), "prepare_s": time.perf_counter() - t0,
                         # The matcher's held-out MS→pseudo-RGB top-1 retrieval (val_top1) against chance.
                         **({"matcher": {k: matcher_meta[k] for k in ("selected_epoch", "val_top1", "val_chance",
                                                                      "val_loss", "true_pair_hits")
                                         if k in matcher_meta}}
                            if matcher_meta else {})},
        }
        if o.diagnostic_samples:
            self._diag["transport_start"] = self._transport({"random": random, "ssm" if o.ssm else "initial": start})
        if ctx.get("true_partners") is not None and student_data.latent is not None and teacher_data.latent is not None:
            self._diag["true_pairs_quality"] = partner_quality(student_data, teacher_data,
                                                               {"true": ctx["true_partners"]})

    def on_epoch_start(self, epoch: int, ctx: dict[str, Any]) -> dict[str, float] | None:
        if epoch not in self.rematch_at or self._data is None:
            return None
        student_data, teacher_data = self._data
        t0 = time.perf_counter()
        logits = all_logits(self.student, student_data, self._ctx["student_px"], **self._run_as())
        sets = teacher_data.sets["train"] if teacher_data.sets is not None else None
        new = rematch_students(logits, student_data.y["train"], self._gallery, teacher_data.y["train"],
                               temperature=self.opts.match_temperature, teacher_sets=sets)
        changed = changed_fraction(self.partner, new)
        self.partner.copy_(new)
        return {"rematch_changed": changed, "rematch_s": time.perf_counter() - t0}

    def _run_as(self) -> dict[str, Any]:
        return {"precision": self._ctx.get("precision", "fp32"), "channels_last": bool(self._ctx.get("channels_last"))}

    def epoch_partners(self, epoch: int) -> Tensor | None:
        return self.partner if self._data is not None else None

    # ---- loss -----------------------------------------------------------------------------------

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        o = self.opts
        if o.weighting == "official":
            logits = self.student_out(batch).logits
            terms = {"ce": OFFICIAL_WEIGHTS["task"] * F.cross_entropy(logits, batch.labels)}
            terms.update({k: OFFICIAL_WEIGHTS["kd"] * v for k, v in self.authors_kd(batch).items()})
            w_ot, form = OFFICIAL_WEIGHTS["ot"] * o.ot_scale, "authors"
        else:
            base = self.base.losses(batch)  # fills batch.cache with the student's and teacher's outputs
            terms = {k: v for k, v in base.items() if k in TASK_TERMS}
            terms.update({k: o.lambda_kd * v for k, v in base.items() if k not in TASK_TERMS})
            w_ot, form = (1.0 - o.lambda_kd) * o.ot_scale, "deep"
        terms.update({k: w_ot * v for k, v in self.alignment(batch, form=form).items()})
        return terms

    def authors_kd(self, batch: Batch) -> dict[str, Tensor]:
        """The base's distillation term as the authors' code computes it, unweighted (:data:`AUTHORS_KD`)."""
        name, base = self.Base.name, self.base
        logits_s = self.student_out(batch).logits
        if name in ("kd", "lskd", "ctkd", "logits"):
            logits_t = base.teacher_class_logits(batch)
            if name == "logits":  # their Logits: 0.01·MSE over B × K
                return {"logits": 0.01 * _mse(logits_s, logits_t)}
            if name == "kd":  # their CKD: KL at T = 3 without T²
                t = AUTHORS_KD_TEMPERATURE
                return {"kd": kd_loss(logits_s, logits_t, temperature=t) / t**2}
            if name == "lskd":
                return {"kd": lskd_loss(logits_s, logits_t, temperature=AUTHORS_KD_TEMPERATURE, eps=base.cfg.eps)}
            tau = base.temperature(base.reversal_factor(batch.epoch))  # CTKD's learnable τ, through its GRL
            return {"kd": kd_loss(logits_s, logits_t, temperature=tau) / tau**2}
        distill = {k: v for k, v in base.losses(batch).items() if k not in TASK_TERMS}
        if name == "rkd":  # their 0.1·(25·L_dist + 50·L_angle); our RKD's weights are 25 and 50
            return {k: 0.1 * v for k, v in distill.items()}
        return distill  # dkd: ramp·(α·TCKD + β·NCKD) with α = 1, β = 8, T = 4, as theirs

    def alignment(self, batch: Batch, *, form: str = "deep") -> dict[str, Tensor]:
        """L_ot1 and L_ot2 (those switched on), unweighted, with CORAL of ``form`` (``deep``/``authors``)."""
        o = self.opts
        if self.planner is None:
            return {}
        t_out, s_out = self.teacher_out(batch), self.student_out(batch)
        out = self.planner(t_out.feature_map, s_out.feature_map)
        ot = SemanticPlanner.ot_losses(out, form=form)
        terms = {}
        if o.ot1:
            terms["ot1"] = ot["ot1"]
        if o.ot2 and o.ot2_space == "planner":
            terms["ot2"] = ot["ot2_planner"]
        elif o.ot2:
            e_t, e_s = t_out.features.detach(), s_out.features
            if e_t.shape[1] != e_s.shape[1]:  # unequal widths: to the planner's width (P_t is frozen)
                e_t, e_s = self.planner.proj_t(e_t), self.planner.proj_s(e_s)
            terms["ot2"] = coral_loss(e_s, e_t, form=form)
        return terms

    # ---- diagnostics ----------------------------------------------------------------------------

    def _transport(self, pairings: dict[str, Tensor]) -> dict[str, Any]:
        """Costs of ``pairings`` in the class-probability space at T, with SSM in the matcher's space,
        and with latent truth in the latent space; with true pairs, those too (on their students)."""
        student_data, teacher_data = self._data
        n, seed, T = self.opts.diagnostic_samples, int(self._ctx.get("seed", 0)), self.opts.match_temperature
        true = self._ctx.get("true_partners")
        if true is not None:
            pairings = {**pairings, "true": true}
        t0 = time.perf_counter()
        logits = all_logits(self.student, student_data, self._ctx["student_px"], **self._run_as())
        p_s = torch.softmax(logits / T, dim=1)
        p_t = torch.softmax(self._gallery / T, dim=1)
        out: dict[str, Any] = {"probability_T": pairing_costs(p_t, p_s, pairings, samples=n, seed=seed)}
        if self._matcher_space is not None:
            ms_emb, rgb_emb = self._matcher_space
            out["matcher"] = pairing_costs(ms_emb, rgb_emb, pairings, samples=n, seed=seed)
        if student_data.latent is not None and teacher_data.latent is not None:
            s_vec, t_vec = latent_vectors(student_data, teacher_data)
            out["latent"] = pairing_costs(torch.from_numpy(t_vec), torch.from_numpy(s_vec), pairings,
                                          samples=n, seed=seed)
        out["seconds"] = time.perf_counter() - t0
        return out

    def diagnostics(self) -> dict[str, Any]:
        if self._data is None:
            return {}
        diag = {k: v for k, v in self._diag.items()}
        diag["matching"] = {**diag["matching"], "final_distinct_partners": int(torch.unique(self.partner).numel()),
                            "changed_since_initial": changed_fraction(self.initial_partner, self.partner)}
        if self.opts.diagnostic_samples:
            pairings = {"random": self.random_partner, "ssm" if self.opts.ssm else "initial": self.initial_partner}
            if self.rematch_at:
                pairings["dynm"] = self.partner
            diag["transport_end"] = self._transport(pairings)
        student_data, teacher_data = self._data
        if student_data.latent is not None and teacher_data.latent is not None:
            # Latent truth of the partners: the initial match and, after DynM, the final one.
            pairings = {"ssm" if self.opts.ssm else "initial": self.initial_partner}
            if self.rematch_at:
                pairings["dynm"] = self.partner
            diag["partner_quality"] = partner_quality(student_data, teacher_data, pairings)
        diag["transport_space"] = {
            "probability_T": f"softmax(logits / {self.opts.match_temperature}) of the teacher (gallery) and the "
                             "student (training chips, no augmentation); squared Euclidean cost",
            "matcher": "the SSM matcher's unit embeddings M_V(MS) and M_G(RGB); squared Euclidean cost",
            "latent": "latent truth [composition, standardised factors] of each chip (benchmark.data.latent_vectors), "
                      "a space no method optimises; squared Euclidean cost",
            "students": "a seeded subsample of the students with a partner in every pairing (with true pairs: "
                        "the co-located students)",
        }
        return {"sembridge": diag}


def _sembridge_over(base: type[Method]) -> type[Method]:
    """The ``sembridge+<base>`` class: SemBridge's options and the base's options in one flat Config."""
    base_fields = dataclasses.fields(base.Config)
    clash = sorted({f.name for f in base_fields} & set(_OPTION_FIELDS))
    if clash:
        raise MethodError(f"method {base.name!r} has options named like SemBridge's ({', '.join(clash)})")
    fields = [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(SemBridgeOptions)]
    fields += [(f.name, f.type, dataclasses.field(default=f.default)) for f in base_fields]
    config = dataclasses.make_dataclass(f"SemBridge_{base.__name__}_Config", fields, frozen=True,
                                        namespace={"__post_init__": _check_options,
                                                   "__doc__": SemBridgeOptions.__doc__})
    return type(f"SemBridge_{base.__name__}", (SemBridge,), {
        "Base": base, "Config": config, "paper": PAPER, "__module__": __name__,
        "description": f"SemBridge (SSM/DynM matching + SKA alignment) over {base.name}: {base.description}",
    })


def _check_options(cfg: Any) -> None:
    SemBridgeOptions(**{f: getattr(cfg, f) for f in _OPTION_FIELDS})


register_plugin("sembridge", _sembridge_over)
_kd = _sembridge_over(KD)
_kd.description = SemBridge.description
register_method("sembridge")(_kd)
