"""The lectures' formulas written out independently, in float64 numpy, one step at a time.

Each function takes the parameters θ_0 and a gradient oracle ``grad(θ) -> g`` and returns
the list of parameters θ_1..θ_T. They are deliberately naive: a line per formula line.
"""

import numpy as np


def gd(theta, grad, steps, eta):
    out = []
    for _ in range(steps):
        theta = theta - eta * grad(theta)  # seed 003: x' = x − η ∇f(x)
        out.append(theta)
    return out


def momentum_classic(theta, grad, steps, eta, gamma, nesterov=False):
    v = np.zeros_like(theta)
    out = []
    for _ in range(steps):
        g = grad(theta)
        v = gamma * v + eta * g  # seed 003: v_t = γ v_{t−1} + η ∇f(x_t)
        step = gamma * v + eta * g if nesterov else v  # Nesterov (Sutskever form, as PyTorch)
        theta = theta - step  # x_{t+1} = x_t − v_t
        out.append(theta)
    return out


def momentum_ema(theta, grad, steps, eta, beta):
    out, m = [], None
    for t in range(steps):
        g = grad(theta)
        m = g if t == 0 else beta * m + (1 - beta) * g  # seed 001: m^0 = g^0, m^t = β m^{t−1} + (1−β) g^t
        theta = theta - eta * m
        out.append(theta)
    return out


def momentum_ema_nesterov(theta, grad, steps, eta, beta):
    out, m = [], None
    for t in range(steps):
        g = grad(theta)
        m = g if t == 0 else beta * m + (1 - beta) * g  # seed 001's EMA momentum
        step = beta * m + (1 - beta) * g  # Nesterov's look-ahead: the gradient with its own coefficient (1 − β)
        theta = theta - eta * step
        out.append(theta)
    return out


def momentum_sum(theta, grad, steps, eta):
    out, m = [], np.zeros_like(theta)
    for _ in range(steps):
        m = m + grad(theta)  # seed 001: m^t = g^0 + … + g^t
        theta = theta - eta * m
        out.append(theta)
    return out


def adagrad(theta, grad, steps, eta, delta, r0=0.0, delta_in_sqrt=False):
    r = np.full_like(theta, r0)
    out = []
    for _ in range(steps):
        g = grad(theta)
        r = r + g * g  # seed 003: r_t = r_{t−1} + g ⊙ g
        denom = np.sqrt(r + delta) if delta_in_sqrt else delta + np.sqrt(r)
        theta = theta - eta / denom * g  # x_{t+1} = x_t − η/(δ + √r_t) g
        out.append(theta)
    return out


def rmsprop(theta, grad, steps, eta, p, delta, delta_in_sqrt=True):
    r = np.zeros_like(theta)
    out = []
    for _ in range(steps):
        g = grad(theta)
        r = p * r + (1 - p) * g * g  # seed 003: r_t = p r_{t−1} + (1 − p) g ⊙ g
        denom = np.sqrt(delta + r) if delta_in_sqrt else delta + np.sqrt(r)
        theta = theta - eta / denom * g  # x_{t+1} = x_t − η/√(δ + r_t) g
        out.append(theta)
    return out


def rmsprop_first_grad(theta, grad, steps, eta, alpha):
    out, sigma = [], None
    for t in range(steps):
        g = grad(theta)
        # seed 001: σ^0 = |g^0|, σ^t = √(α (σ^{t−1})² + (1 − α)(g^t)²)
        sigma = np.abs(g) if t == 0 else np.sqrt(alpha * sigma**2 + (1 - alpha) * g**2)
        theta = theta - eta / sigma * g
        out.append(theta)
    return out


def rmsprop_torch(theta, grad, steps, lr, alpha, eps, momentum=0.0, centered=False):
    """PyTorch's RMSprop documentation, eps outside the root."""
    sq = np.zeros_like(theta)
    gavg = np.zeros_like(theta)
    buf = np.zeros_like(theta)
    out = []
    for _ in range(steps):
        g = grad(theta)
        sq = alpha * sq + (1 - alpha) * g * g
        if centered:
            gavg = alpha * gavg + (1 - alpha) * g
            avg = np.sqrt(sq - gavg**2) + eps
        else:
            avg = np.sqrt(sq) + eps
        if momentum > 0:
            buf = momentum * buf + g / avg
            theta = theta - lr * buf
        else:
            theta = theta - lr * g / avg
        out.append(theta)
    return out


def adam(theta, grad, steps, alpha, b1, b2, eps, bias_correction=True, weight_decay=0.0):
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t in range(1, steps + 1):
        g = grad(theta)
        m = b1 * m + (1 - b1) * g  # Algorithm 1
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t) if bias_correction else m
        v_hat = v / (1 - b2**t) if bias_correction else v
        # AdamW (decoupled): θ_t = θ_{t−1} − α (m̂/(√v̂ + ε) + λ θ_{t−1})
        theta = theta - alpha * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * theta)
        out.append(theta)
    return out


def gd_l2(theta, grad, steps, eta, lam):
    out = []
    for _ in range(steps):
        theta = (1 - eta * lam) * theta - eta * grad(theta)  # seed 004: (1 − ηλ) w − η ∂L/∂w
        out.append(theta)
    return out


def gd_l1(theta, grad, steps, eta, lam):
    out = []
    for _ in range(steps):
        theta = theta - eta * grad(theta) - eta * lam * np.sign(theta)  # seed 004: − ηλ sgn(w)
        out.append(theta)
    return out
