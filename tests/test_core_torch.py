"""Against PyTorch's optimizers, where the semantics coincide (skipped without torch).

torch is an optional extra (`pip install -e .[torch]`, torch==2.13.0); CI runs without it.
"""

import numpy as np
import pytest
from test_core_numerics import STEPS, THETA0, A, B, assert_paths_close, run

import jaxopt_lectures as jol

torch = pytest.importorskip("torch")


def torch_path(make_opt, steps=STEPS):
    p = torch.nn.Parameter(torch.tensor(THETA0, dtype=torch.float32))
    opt = make_opt([p])
    a, b = torch.tensor(A, dtype=torch.float32), torch.tensor(B, dtype=torch.float32)
    out = []
    for _ in range(steps):
        with torch.no_grad():
            p.grad = a * p + b + 0.3 * torch.cos(p)
        opt.step()
        out.append(p.detach().numpy().astype(np.float64).copy())
    return out


CASES = {
    "sgd": (jol.sgd(0.05), lambda ps: torch.optim.SGD(ps, lr=0.05)),
    "sgd_momentum_classic": (jol.sgd(0.05, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
    "sgd_nesterov": (
        jol.sgd(0.05, momentum=0.9, nesterov=True),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    ),
    # the lecture's EMA momentum (m_0 = g_0) is torch's dampening = β
    "momentum_ema_is_dampening_beta": (
        jol.momentum(0.1, beta=0.7, variant="ema"),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.7, dampening=0.7),
    ),
    "momentum_sum_is_momentum_one": (
        jol.momentum(0.01, variant="sum"),
        lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=1.0),
    ),
    "sgd_weight_decay_is_coupled_l2": (
        jol.chain(jol.add_l2_regularization(0.1, mask=None), jol.sgd(0.05, momentum=0.9)),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.1),
    ),
    "adagrad": (jol.adagrad(0.3), lambda ps: torch.optim.Adagrad(ps, lr=0.3)),
    "adagrad_initial_accumulator": (
        jol.adagrad(0.3, initial_accumulator_value=0.1),
        lambda ps: torch.optim.Adagrad(ps, lr=0.3, initial_accumulator_value=0.1),
    ),
    "rmsprop": (
        jol.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False),
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.99, eps=1e-8),
    ),
    "rmsprop_centered_momentum": (
        jol.rmsprop(0.01, decay=0.9, eps=1e-6, eps_in_sqrt=False, centered=True, momentum=0.9),
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-6, centered=True, momentum=0.9),
    ),
    "adam": (jol.adam(0.01), lambda ps: torch.optim.Adam(ps, lr=0.01)),
    "adamw": (
        jol.adamw(0.01, weight_decay=0.1, mask=None),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch(name):
    ours, make_torch = CASES[name]
    assert_paths_close(run(ours), torch_path(make_torch), rtol=2e-5, atol=1e-6)
