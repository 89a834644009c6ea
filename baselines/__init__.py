"""The KD baselines, one file each; importing this package registers all of them."""

from ackd_bench.baselines import (  # noqa: F401  (imported for their @register_method side effect)
    c2kd,
    ctkd,
    distilvpr,
    dkd,
    kd,
    logit_regression,
    lskd,
    rkd,
    student_only,
)
