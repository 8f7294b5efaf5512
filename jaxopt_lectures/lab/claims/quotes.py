"""What the lectures claim, quoted: one :class:`Claim` per row of the lecture table.

Pure data (no jax, no flax). Each claim names the step of the lecture's table it belongs to,
the expected effect of the variant (against the row's baseline) on the training loss and on the
validation/test loss, where the claim comes from, the lecture's own words and the regime in which
the claim applies. The rows that test the claims live in :mod:`.rows`, keyed by the same name.

The lecture's table (seed ``000`` lines 1951-1987, restated in ``002``)::

    方法名 (technique)   改了那一個步驟 (which step)   帶來什麼好處 (what benefit)

with the two benefits defined at ``000`` lines 48-49: "Better Optimization：更低的 Training
Loss" (lower training loss) and "Better Generalization：更低的 Validation Loss" (lower
validation loss). Its three steps are the values of :attr:`Claim.step`:

- ``"loss"``: 我要找什麼 (what we want: the loss and the data)
- ``"function_set"``: 改變函式搜尋範圍 (change the set of functions searched)
- ``"optimization"``: 找最好的函式 (find the best function)

Vocabulary of :attr:`Claim.train` and :attr:`Claim.val` (the variant against the baseline):
``"better"`` (lower loss), ``"not better"`` (the lecture's "Not for Optimization" / "(not for
Generalization)": no improvement, no change or worse), ``"worse"`` (e.g. "(Worse
Optimization)"), or ``None`` when the lecture says nothing about that half.

Vocabulary of :attr:`Claim.source`: ``"lecture"`` (the seeds state it), ``"inferred"`` (our
inference from where the technique sits in the lectures), ``"linked lecture"`` (the seeds only
link to where it is argued).

Quotes: :attr:`Quote.text` is an exact substring of lines ``lines[0]..lines[1]`` (1-based,
inclusive) of the seed file ``docs/seeds/<seed>`` joined by ``"\\n"``, *after collapsing every run
of whitespace (spaces, tabs, newlines) to one space on both sides*: the seeds are slide text
extracted line by line, so a phrase may be broken across lines or carry trailing blanks.
``tests/test_lab_quotes.py`` checks exactly that.
"""

from __future__ import annotations

from typing import NamedTuple

S000 = "000_fb1a9b7fe7509d70.txt"  # 李宏毅, 一堂課看懂訓練類神經網路的各種訣竅 (slide text)
S001 = "001_5ce227dc5efaf5fe.txt"  # the same lecture's first part (slides as markdown/LaTeX)
S002 = "002_a8c5e6839441e8d0.txt"  # an OCR copy of the 000 slides
S003 = "003_2213b732ac9896c8.txt"  # 林英嘉, 深度學習: 最佳化方法 (optimizers, batch size)
S004 = "004_8828e566caa3f41f.txt"  # ML Lecture 9-1: Tips for Training DNN (transcript)

SEEDS = (S000, S001, S002, S003, S004)
STEPS = ("loss", "function_set", "optimization")
EFFECTS = ("better", "not better", "worse", None)
SOURCES = ("lecture", "inferred", "linked lecture")


class Quote(NamedTuple):
    """The lecture's words: ``text`` occurs in lines ``lines`` of seed file ``seed``."""

    seed: str  # file name under docs/seeds/, e.g. "000_fb1a9b7fe7509d70.txt"
    lines: tuple[int, int]  # 1-based inclusive line range in that file
    text: str  # the lecture's words (whitespace compared collapsed; see the module docstring)
    gloss: str  # short English gloss


class Claim(NamedTuple):
    """One claim of the lectures, as the table tests it (variant against baseline)."""

    name: str  # registry name (the key in CLAIMS and in rows.REGISTRY)
    technique: str  # human name
    step: str  # one of STEPS
    train: str | None  # expected effect on the training loss: one of EFFECTS
    val: str | None  # expected effect on the validation/test loss: one of EFFECTS
    source: str  # one of SOURCES
    quotes: tuple[Quote, ...]  # at least one
    statement: str  # the full claim in English, including its negative half
    condition: str  # the regime in which the claim applies, in words


# --- quotes used by several claims -----------------------------------------------------------

Q_OPTIMIZERS = Quote(
    S000,
    (747, 751),
    "Adagrad, RMSProp, \nMomentum, Adam, etc. \n\n找最好的函式 Better Optimization\n(not for Generalization)",
    "Adagrad, RMSProp, Momentum, Adam, etc.: step 'find the best function'; better optimization "
    "(not for generalization)",
)
Q_OPTIMIZERS_TABLE = Quote(
    S000,
    (1955, 1955),
    "Adagrad, RMSProp, Momentum, Adam, etc. 找最好的函式 Better Optimization",
    "concluding table: the optimizers find the best function; better optimization",
)
Q_SCHEDULING = Quote(
    S000,
    (689, 689),
    "Learning Rate Scheduling",
    "learning-rate scheduling (warm-up, decay) is part of the optimizer: η becomes η^t",
)
Q_SUMMARY = Quote(
    S000,
    (722, 722),
    "Summarization of Optimizer",
    "the optimizer summary slide, with learning-rate "
    "scheduling in it; its table row is the optimizers' row (l.747-751)",
)
Q_OVERFIT_RECIPE = Quote(
    S004,
    (353, 353),
    "如果今天已經在 training data 上得到夠好的結果，但是在 testing data 上的結果仍然不好",
    "(the following methods are for when) training results are already good enough but testing "
    "results are still bad: early stopping, regularization, dropout",
)
Q_DROPOUT_WHEN = Quote(
    S004,
    (53, 53),
    "dropout 是在 testing 的結果不好的時候才會使用的",
    "dropout is used only when the testing results are bad (if training is the problem it only makes things worse)",
)
Q_PARAM_REG = Quote(
    S000,
    (1887, 1891),
    "Parameter \nRegularization\n\n我要找甚麼 Better Generalization\nNot for Optimization",
    "parameter regularization: step 'what we want'; better generalization, not for optimization",
)
Q_L_PRIME = Quote(
    S000, (1819, 1819), "𝐿′ 𝜽 = 𝐿 𝜽 +𝜆𝑅 𝜽", "the new loss L'(θ) = L(θ) + λR(θ), with R(θ) = Σθᵢ² (l.1830-1834)"
)
Q_CLOSE_TO_ZERO = Quote(
    S000, (1837, 1837), "希望 Parameter 越接近 0 越好", "we want the parameters as close to 0 as possible"
)
Q_NORM = Quote(
    S000,
    (1507, 1510),
    "Normalization 改變函式搜尋範圍 Better Optimization\n(Sometimes Better \n\nGeneralization)",
    "normalization: step 'change the function set'; better optimization (sometimes better generalization)",
)
Q_NORM_TABLE = Quote(
    S000,
    (1971, 1972),
    "Normalization 改變函式搜尋範圍 Better Optimization\n(Sometimes Better Generalization)",
    "concluding table: normalization, better optimization (sometimes better generalization)",
)
Q_INIT = Quote(
    S000,
    (783, 783),
    "不同的起始位置，可能會導致非常不同的訓練結果",
    "different starting points can lead to very different training results",
)
Q_INIT_ROW = Quote(
    S000,
    (846, 850),
    "Initialization \n(e.g., pre-train)\n\n找最好的函式 Better Optimization,\nBetter Generalization",
    "initialization (e.g. pre-train): step 'find the best function'; better optimization and better generalization",
)
Q_PRETRAIN = Quote(
    S000,
    (852, 853),
    "Pre-train 對於 Optimization \n和 Generalization 都有幫助",
    "pre-training helps both optimization and generalization",
)
Q_WHICH_MIN = Quote(
    S000,
    (798, 799),
    "當有多個 Training Loss 最低點的時候，\n起始位置決定我們走到哪一個最低點",
    "when the training loss has several minima, the starting point decides which minimum we reach",
)
Q_FLAT = Quote(
    S000,
    (806, 812),
    "Training\nLoss\n\nValidation\nLoss\n\n在平坦盆地中 在峽谷中",
    "training loss and validation loss: in a flat basin / in a canyon (the flat minimum keeps a low "
    "validation loss when the curve shifts)",
)
Q_RELU_VARIANTS = Quote(
    S004,
    (62, 62),
    "可能可以透過換一些新的 activation function，得到比較好的結果",
    "(when training results are bad) switching to a new activation function may give better results",
)
Q_SEMI = Quote(
    S000,
    (1799, 1803),
    "Semi-supervised \n(e.g., Entropy, Graph)\n\n我要找甚麼 Better Generalization\nNot for Optimization",
    "semi-supervised (e.g. entropy, graph): step 'what we want'; better generalization, not for optimization",
)
Q_AUGMENT = Quote(
    S000,
    (1690, 1694),
    "Data Augmentation \n(e.g. Mixup)\n\n我要找甚麼 Better Generalization\nNot for Optimization",
    "data augmentation (e.g. mixup): step 'what we want'; better generalization, not for optimization",
)
Q_ACC_LOSS = Quote(
    S000,
    (1585, 1589),
    "Do not use \naccuracy as loss\n\n我要找甚麼 Better Optimization \n(Not for Generalization)",
    "do not use accuracy as the loss: step 'what we want'; better optimization (not for generalization)",
)
Q_CE = Quote(
    S000,
    (1549, 1549),
    "Cross-entropy as the loss in classification",
    "cross-entropy as the loss in classification (the slide links 'Why Cross-entropy?' lectures)",
)
Q_WHY_CE = Quote(S000, (1552, 1552), "Why Cross-entropy?", "why cross-entropy? (answered only in the linked videos)")
Q_OTHER_LOSS = Quote(
    S000,
    (1597, 1597),
    "有沒有其他可能性？",
    "is there any other possibility? (a link to another lecture, right after the cross-entropy vs accuracy slide)",
)
Q_ADAGRAD_FAST = Quote(
    S003,
    (617, 617),
    "缺點: Learning rate 或許會下降太快 (因為  $r_t$  持續累積平方和)",
    "drawback: the learning rate may fall too fast (because r_t keeps accumulating squares)",
)
Q_RMSPROP_FIX = Quote(
    S003,
    (624, 625),
    "RMSProp (Root Mean Square Propagation) 是 Adagrad 的改版,為了避免\n"
    "  - r 很快就變很大,使得學習率很快就變得很低 (此時神經網路會很難更新)",
    "RMSProp is a revision of Adagrad, to avoid r growing fast so that the learning rate quickly "
    "becomes very low (and the network becomes hard to update)",
)
Q_MOMENTUM_SLIDE = Quote(S000, (457, 468), "考慮動量 (Momentum)", "consider momentum")
Q_MOMENTUM_INERTIA = Quote(
    S000,
    (468, 468),
    "因為有動量，所以移動中的物體不會輕易停下來。",
    "because of momentum, a moving object does not stop easily (at saddle points, small gradients)",
)
Q_NOT_CLASSIC = Quote(
    S000, (613, 613), "(這不是經典的 Momentum)", "(this is not the classic momentum): the slides' m = βm + (1 − β)g"
)
Q_WEIGHT_DECAY = Quote(
    S000,
    (1893, 1894),
    "Weight Decay 找最好的函式 Better Generalization\nNot for Optimization",
    "weight decay: step 'find the best function'; better generalization, not for optimization",
)
Q_DROPOUT = Quote(
    S000,
    (768, 769),
    "Dropout 找最好的函式 Better Generalization\n(Worse Optimization)",
    "dropout: step 'find the best function'; better generalization (worse optimization)",
)
Q_DROPOUT_TIMING = Quote(S000, (774, 775), "注意 Dropout \n的選擇時機!", "pay attention to when to choose dropout!")
Q_DROPOUT_WORSE = Quote(
    S004,
    (474, 474),
    "dropout 它真正要做的事情是就是要讓 training 的結果變差，但是 testing 的結果是變好的",
    "what dropout really does is make the training results worse but the testing results better",
)
Q_DROPOUT_SCALE = Quote(
    S004,
    (469, 470),
    "- If the dropout rate at training is p%,\nall the weights times 1-p%",
    "if the dropout rate at training is p%, (at test time) all the weights are multiplied by 1 − p%",
)
Q_DROPOUT_SCALE_TALK = Quote(
    S004, (477, 477), "所有 weight 都要乘 $(1 - p\\%)$", "(at test time) all weights must be multiplied by (1 − p%)"
)
Q_DROPOUT_2Z = Quote(
    S004,
    (512, 512),
    "$$0.5 \\times w_1 \\quad \\rightarrow z' \\approx 2z$$",
    "(p = 50%) testing with the trained weights, no dropout: z' ≈ 2z",
)
Q_DROPOUT_Z = Quote(
    S004,
    (516, 516),
    "$$\\text{Weights multiply } 1-p\\% \\quad \\rightarrow z' \\approx z$$",
    "weights multiplied by 1 − p%: z' ≈ z",
)
Q_DEGRADE = Quote(S004, (31, 31), "Do not always blame Overfitting", "do not always blame overfitting")


def _c(name, technique, step, train, val, source, quotes, statement, condition) -> Claim:
    return Claim(name, technique, step, train, val, source, tuple(quotes), statement, condition)


OVERFITS = "the baseline overfits: a large gap between training and validation loss"
ILL_CONDITIONED = (
    "an ill-conditioned problem: the loss is steep in some directions and flat in others, so one η cannot fit "
    "every parameter (here: badly scaled input features); each arm at its own best η, equal updates"
)
Q_PER_PARAMETER_LR = Quote(
    S000,
    (146, 147),
    "不同參數應該要有不同\n的 Learning Rate",
    "different parameters should have different learning rates",
)
TUNED = "each arm at its own best learning rate (validation-selected), equal updates"

CLAIMS_LIST: list[Claim] = [
    # --- 找最好的函式: the optimizers ------------------------------------------------------------
    _c(
        "adagrad",
        "Adagrad (vs SGD)",
        "optimization",
        "better",
        "not better",
        "lecture",
        [
            Q_OPTIMIZERS,
            Q_PER_PARAMETER_LR,
            Q_OPTIMIZERS_TABLE,
            Quote(S000, (330, 330), "Adagrad: 全部平方加起來", "Adagrad: add up all the squares (of past gradients)"),
        ],
        "Adagrad: better optimization (lower training loss than plain SGD), not for generalization",
        ILL_CONDITIONED,
    ),
    _c(
        "rmsprop",
        "RMSProp (vs SGD)",
        "optimization",
        "better",
        "not better",
        "lecture",
        [
            Q_OPTIMIZERS,
            Q_PER_PARAMETER_LR,
            Q_OPTIMIZERS_TABLE,
            Quote(
                S000,
                (332, 332),
                "RMSProp: 最近算出來的 gradient 給比較大的影響",
                "RMSProp: the most recent gradients get a larger influence",
            ),
        ],
        "RMSProp: better optimization (lower training loss than plain SGD), not for generalization",
        ILL_CONDITIONED,
    ),
    _c(
        "momentum",
        "Momentum (vs SGD)",
        "optimization",
        "better",
        "not better",
        "lecture",
        [Q_OPTIMIZERS, Q_PER_PARAMETER_LR, Q_OPTIMIZERS_TABLE, Q_MOMENTUM_INERTIA],
        "momentum: better optimization (lower training loss than plain SGD), not for generalization",
        ILL_CONDITIONED
        + "; classic momentum with β = 0.9 equals SGD at 10x η, so only a tuned comparison means anything",
    ),
    _c(
        "adam",
        "Adam (vs SGD)",
        "optimization",
        "better",
        "not better",
        "lecture",
        [
            Q_OPTIMIZERS,
            Q_PER_PARAMETER_LR,
            Q_OPTIMIZERS_TABLE,
            Quote(S000, (626, 626), "Adam: RMSProp + Momentum", "Adam: RMSProp + momentum"),
        ],
        "Adam: better optimization (lower training loss than plain SGD), not for generalization",
        ILL_CONDITIONED,
    ),
    _c(
        "nesterov",
        "Nesterov momentum (vs classic momentum)",
        "optimization",
        "better",
        "not better",
        "inferred",
        [
            Quote(
                S003,
                (385, 385),
                "Nesterov Momentum (不常用)",
                "Nesterov momentum (rarely used), listed among the optimizers that modify the gradient",
            ),
            Q_OPTIMIZERS,
        ],
        "Nesterov momentum trains better than classic momentum (lower training loss), not for generalization; the "
        "lecture only lists it ('rarely used') under the optimizers, whose row is 'better optimization'",
        ILL_CONDITIONED + "; both arms use momentum 0.9",
    ),
    _c(
        "momentum_variants",
        "Momentum: EMA form (vs classic)",
        "optimization",
        "not better",
        "not better",
        "inferred",
        [
            Q_NOT_CLASSIC,
            Quote(
                S003,
                (405, 405),
                "$$v_t = \\gamma v_{t-1} + \\eta \\nabla_x f(x_t)$$",
                "the classic momentum of the other lecture: v_t = γ v_{t−1} + η ∇f(x_t)",
            ),
            Quote(
                S001,
                (249, 249),
                "Momentum (這不是經典的 Momentum)",
                "the first form, m = g⁰ + … + gᵗ, then the EMA form: 'this is not the classic momentum'",
            ),
        ],
        "the slides' EMA momentum m = βm + (1 − β)g and classic v = βv + g differ only by the factor (1 − β) on η: "
        "with η tuned per arm neither trains or generalizes better (a tie; checked as 'not better' on both)",
        TUNED + "; the η grid must contain the rescaled rate (×(1 − β)) of each arm's best",
    ),
    _c(
        "bias_correction",
        "Adam's bias correction (early steps)",
        "optimization",
        "better",
        None,
        "lecture",
        [
            Quote(S003, (698, 698), "訓練初期的問題", "the early-training problem (of Adam's moment estimates)"),
            Quote(
                S003,
                (744, 744),
                "代表隨著訓練時間增加, 越來越不需要校正",
                "i.e. as training goes on, the correction is needed less and less",
            ),
            Quote(
                S000,
                (675, 676),
                "Adam has bias-corrected terms, \nwhich are omitted here for simplicity.",
                "Adam has bias-corrected terms, which are omitted here for simplicity",
            ),
        ],
        "Adam's bias correction fixes the early-training problem: with it the training loss after the first updates "
        "(one epoch) is lower than without it; the lecture says nothing about generalization, and the correction "
        "stops mattering later",
        "early training only: one epoch (39 updates), where 1 − βᵗ is far from 1; each arm at its own η",
    ),
    _c(
        "rmsprop_first_grad",
        "RMSProp starting at σ⁰ = |g⁰| (vs σ⁰ = 0)",
        "optimization",
        "better",
        None,
        "inferred",
        [
            Quote(
                S001,
                (177, 177),
                "For each dimension i : $\\sigma_i^0 = \\sqrt{(g_i^0)^2}$",
                "RMSProp: for each dimension i, σ⁰ = √((g⁰)²) = |g⁰|",
            ),
            Quote(
                S004,
                (242, 242),
                "在第一個時間點， σ 就是第一個算出來的 gradient 的值 g^0",
                "at the first time step σ is the value of the first computed gradient g⁰",
            ),
        ],
        "starting RMSProp's σ at the first gradient (the lectures' definition) trains better in the first updates "
        "than the zero start of most libraries, whose early σ is too small and its steps too large; the lectures only "
        "define the start, the comparison is our inference; nothing is said about generalization",
        "early training only: one epoch (39 updates); each arm at its own η",
    ),
    _c(
        "rmsprop_vs_adagrad",
        "RMSProp (vs Adagrad), long run",
        "optimization",
        "better",
        "not better",
        "lecture",
        [
            Q_ADAGRAD_FAST,
            Q_RMSPROP_FIX,
            Quote(
                S004,
                (230, 230),
                "真正要處理 deep learning 的問題，用 Adagrad 可能是不夠的",
                "to really handle deep-learning problems Adagrad may not be enough",
            ),
        ],
        "on a long run Adagrad's accumulated σ makes its step shrink too fast; RMSProp (its fix) reaches a lower "
        "training loss; like every optimizer row, not for generalization",
        "a long run (40 epochs), long enough for Adagrad's step to have shrunk; each arm at its own η",
    ),
    _c(
        "warmup",
        "Learning-rate warm-up",
        "optimization",
        "better",
        "not better",
        "lecture",
        [
            Q_SCHEDULING,
            Quote(S000, (716, 716), "Warm Up", "warm up (one of the two schedules on the slide)"),
            Quote(S000, (718, 718), "探索地形", "(slide label, extracted as '準備停下來探索地形') explore the terrain"),
            Q_SUMMARY,
            Q_OPTIMIZERS,
        ],
        "warm-up is part of the optimizer (η^t): better optimization, not for generalization",
        "early instability: a deep network without normalization at a high η, where runs without warm-up fail or "
        "spike in their first updates (failure rate and largest stable η reported)",
    ),
    _c(
        "decay",
        "Learning-rate decay",
        "optimization",
        "better",
        "not better",
        "lecture",
        [
            Q_SCHEDULING,
            Quote(S000, (716, 716), "Learning Rate Decay", "learning-rate decay"),
            Quote(S000, (718, 718), "準備停下來", "(slide label, extracted as '準備停下來探索地形') get ready to stop"),
            Q_SUMMARY,
            Q_OPTIMIZERS,
        ],
        "learning-rate decay is part of the optimizer (η^t): better optimization, not for generalization",
        "the constant-η run has plateaued on a noise floor (slope of its last quarter near zero); in the "
        "interpolation regime constant η keeps improving and decay has nothing to remove",
    ),
    _c(
        "adamw",
        "AdamW (vs Adam + L2 in the loss)",
        "optimization",
        None,
        "better",
        "linked lecture",
        [
            Quote(
                S000,
                (1946, 1947),
                "AdamW 找最好的函式 Better Generalization (cf. Adam)\nBetter Optimization (cf. Vanilla)",
                "AdamW: step 'find the best function'; better generalization (compared with Adam); better "
                "optimization (compared with vanilla gradient descent)",
            ),
            Quote(
                S000,
                (1918, 1918),
                "https://arxiv.org/abs/1711.05101",
                "the linked paper: Loshchilov & Hutter, decoupled weight decay regularization",
            ),
            Quote(S003, (786, 786), "DECOUPLED WEIGHT DECAY REGULARIZATION", "the AdamW paper, announced for week 7"),
        ],
        "AdamW (decoupled decay) generalizes better than Adam with L2 in the loss, each at its own best λ: the linked "
        "paper's comparison; the slide compares with plain Adam ('cf. Adam', row adamw_vs_adam). Its 'better "
        "optimization' half is against vanilla GD and is not checked here",
        OVERFITS + "; each arm at its own best η and λ (λ grids of their own: the two λ are in different units)",
    ),
    _c(
        "adamw_vs_adam",
        "AdamW (vs plain Adam)",
        "optimization",
        None,
        "better",
        "lecture",
        [
            Quote(
                S000,
                (1946, 1947),
                "AdamW 找最好的函式 Better Generalization (cf. Adam)\nBetter Optimization (cf. Vanilla)",
                "AdamW: step 'find the best function'; better generalization (compared with Adam); better "
                "optimization (compared with vanilla gradient descent)",
            ),
            Quote(
                S000,
                (1957, 1958),
                "AdamW 找最好的函式 Better Generalization (cf. Adam)\nBetter Optimization (cf. Vanilla)",
                "concluding table: the same row",
            ),
        ],
        "AdamW: better generalization than plain Adam (cf. Adam); its 'better optimization' half is against vanilla "
        "GD (cf. Vanilla), not against Adam, and is not checked here",
        OVERFITS + "; AdamW at its own best η and λ, Adam at its own best η",
    ),
    _c(
        "dropout",
        "Dropout",
        "optimization",
        "worse",
        "better",
        "lecture",
        [Q_DROPOUT, Q_DROPOUT_TIMING, Q_DROPOUT_WORSE, Q_DROPOUT_WHEN],
        "dropout: better generalization (worse optimization): training loss rises, validation/test loss falls",
        OVERFITS + " (dropout is for bad testing results; when training is the problem it only makes things worse)",
    ),
    _c(
        "weight_decay",
        "Weight decay (SGD + momentum)",
        "optimization",
        "not better",
        "better",
        "lecture",
        [
            Q_WEIGHT_DECAY,
            Quote(
                S000,
                (1962, 1962),
                "Weight Decay 找最好的函式 Better Generalization",
                "concluding table: weight decay, better generalization",
            ),
            Quote(
                S000,
                (1864, 1866),
                "= 1 − 2𝜂𝜆 𝜽 − 𝜂𝒈",
                "the update with R(θ) = Σθ² becomes θ ← (1 − 2ηλ)θ − ηg: weight decay",
            ),
        ],
        "weight decay: better generalization, not for optimization",
        OVERFITS + "; λ tuned on validation (a too-large λ wins in loss while losing accuracy)",
    ),
    _c(
        "l1",
        "L1 regularization",
        "loss",
        "not better",
        "better",
        "lecture",
        [
            Q_PARAM_REG,
            Quote(S004, (411, 413), "L1 regularization:", "L1 regularization: ‖θ‖₁ = |w₁| + |w₂| + …"),
            Q_OVERFIT_RECIPE,
        ],
        "parameter regularization (here L1, the other lecture's variant of R(θ)): better generalization, not for "
        "optimization",
        OVERFITS + "; λ tuned on validation",
    ),
    _c(
        "l2_in_loss",
        "L2 in the loss (parameter regularization)",
        "loss",
        "not better",
        "better",
        "lecture",
        [
            Q_PARAM_REG,
            Q_L_PRIME,
            Q_CLOSE_TO_ZERO,
            Quote(
                S000,
                (1985, 1985),
                "Parameter Regularization 我要找甚麼 Better Generalization",
                "concluding table: parameter regularization, step 'what we want', better generalization",
            ),
        ],
        "R(θ) = Σθ² added to the loss (the table's own example of parameter regularization): better generalization, "
        "not for optimization",
        OVERFITS + "; λ tuned on validation",
    ),
    _c(
        "l1_vs_l2_sparsity",
        "L1 vs L2: sparsity",
        "loss",
        None,
        None,
        "lecture",
        [
            Quote(
                S004,
                (426, 426),
                "用 L1 做 training，得到的結果是會比較 sparse，也就是說 train 出來的參數裡面有很多接近 0 的值，但是會有很大的值",
                "training with L1 gives a sparser result: many parameters close to 0, but some large ones",
            ),
            Quote(
                S004,
                (426, 426),
                "在 L2 裡面，它 train 出來的結果會保留很多接近 0 的值；L1 裡面不會保留很多很小的值",
                "L2 keeps many values that are near 0 (but not 0); L1 does not keep many small values",
            ),
            Quote(
                S004, (426, 426), "所以他們 train 出來的結果是略有差異的", "so what they train is slightly different"
            ),
        ],
        "L1 gives sparser weights than L2 at the same λ (measured: the fraction of near-zero weights, higher under "
        "L1); the lecture claims no difference in training or validation loss between them ('slightly different')",
        "both penalties at the same λ, trained until the weights settle; the measured quantity is the weights, not a loss",
    ),
    _c(
        "early_stopping",
        "Early stopping",
        "optimization",
        "not better",
        "better",
        "lecture",
        [
            Quote(
                S004,
                (363, 363),
                "我們應該停在不是 training set 的 loss 最小、而是 testing set 的 loss 最小的地方",
                "we should stop not where the training loss is smallest but where the testing loss is smallest",
            ),
            Quote(
                S004,
                (363, 363),
                "我們其實會用 validation set 來 verify 這件事情",
                "in practice we use a validation set to decide this",
            ),
            Q_OVERFIT_RECIPE,
        ],
        "early stopping: better generalization (lower test loss), not for optimization (the stopped model's training "
        "loss is not the lowest)",
        OVERFITS + "; the epoch is chosen on the validation split, the verdict read on the test split",
    ),
    _c(
        "init",
        "Initialization (scale: He vs LeCun)",
        "optimization",
        "better",
        None,
        "inferred",
        [
            Q_INIT,
            Q_INIT_ROW,
            Quote(
                S000,
                (785, 785),
                "(Optimizer 可以克服初始位置帶來的差異嗎？)",
                "(can the optimizer overcome the differences caused by the starting point?)",
            ),
        ],
        "He initialization trains a deep ReLU network better than LeCun initialization; the lecture says the start "
        "changes training results and lists initialization under better optimization, but its example is "
        "pre-training: the claim about the init scale is our inference (He et al. 2015); generalization not checked",
        "a deep plain ReLU network (8 layers) whose LeCun-initialized baseline trains (does not diverge); each arm at "
        "its own η",
    ),
    _c(
        "init_minimum",
        "Initialization decides which minimum",
        "optimization",
        None,
        None,
        "lecture",
        [Q_WHICH_MIN, Q_FLAT, Q_INIT],
        "when the training loss has several minima the start decides which one is reached (a flat basin or a "
        "canyon): two starts reach minima of different sharpness (measured: mean loss rise under 5% weight noise); "
        "the lecture does not say which start gives the flat one, so no loss direction is claimed",
        "both starts reach a low training loss (several minima exist); sharpness is compared at the end",
    ),
    _c(
        "pretrain",
        "Pre-training on a pretext task",
        "optimization",
        "better",
        "better",
        "lecture",
        [
            Q_INIT_ROW,
            Q_PRETRAIN,
            Quote(
                S000,
                (1964, 1965),
                "Initialization (e.g., pre-train) 找最好的函式 Better Optimization,\nBetter Generalization",
                "concluding table: initialization (e.g. pre-train), better optimization and better generalization",
            ),
        ],
        "pre-training: better optimization and better generalization",
        "few labels (100 digits) and many unlabeled examples for the pretext task; both arms trained to convergence at "
        "their own η",
    ),
    # --- 改變函式搜尋範圍: the function set ------------------------------------------------------------
    _c(
        "cnn",
        "CNN (vs MLP)",
        "function_set",
        None,
        "better",
        "lecture",
        [
            Quote(
                S000,
                (1396, 1399),
                "CNN \n(e.g., for image)\n\n改變函式搜尋範圍 Better Generalization",
                "CNN (e.g. for images): step 'change the function set'; better generalization",
            ),
            Quote(
                S000,
                (889, 892),
                "函式集合大一點，比較\n可能包到好的函式\n\n(容易 overfitting)",
                "a larger function set is more likely to contain a good function (but overfits easily)",
            ),
            Quote(
                S000,
                (894, 897),
                "選一個小範圍但剛好\n包含好的函式\n\n(根據 domain knowledge)",
                "choose a small set that just contains a good function (by domain knowledge)",
            ),
        ],
        "CNN (a smaller, domain-informed function set): better generalization; nothing is said about optimization",
        OVERFITS + " (the fully connected baseline)",
    ),
    _c(
        "skip",
        "Skip connections",
        "function_set",
        "better",
        None,
        "lecture",
        [
            Quote(
                S000,
                (1487, 1487),
                "Skip Connection 改變函式搜尋範圍 Better Optimization",
                "skip connection: step 'change the function set'; better optimization",
            ),
            Quote(
                S000,
                (1446, 1448),
                "往往很小 (gradient vanishing)\n\n有時候又會突然變很大 (gradient exploding)",
                "(ΔL/Δw) is often very small (vanishing gradient) and sometimes suddenly very large (exploding)",
            ),
        ],
        "skip connections: better optimization (lower training loss); nothing is said about generalization",
        "a deep network (ResNet-20) whose plain version is hard to optimize",
    ),
    _c(
        "batchnorm",
        "Batch normalization",
        "function_set",
        "better",
        None,
        "lecture",
        [Q_NORM, Q_NORM_TABLE, Quote(S000, (1512, 1512), "• Batch Renormalization", "batch renormalization (linked)")],
        "normalization: better optimization (sometimes better generalization: 'sometimes' is not checked)",
        "a deep ReLU network with He initialization (a baseline that trains), each arm at its own η",
    ),
    _c(
        "layernorm",
        "Layer normalization",
        "function_set",
        "better",
        None,
        "lecture",
        [Q_NORM, Q_NORM_TABLE, Quote(S000, (1515, 1515), "• Layer Normalization", "layer normalization (linked)")],
        "normalization: better optimization (sometimes better generalization: 'sometimes' is not checked)",
        "a deep ReLU network with He initialization (a baseline that trains), each arm at its own η",
    ),
    _c(
        "sigmoid",
        "ReLU (vs sigmoid) on a deep net",
        "function_set",
        "better",
        None,
        "lecture",
        [
            Quote(
                S004,
                (67, 67),
                "當 layer 是 9 層、10 層時整個結果就崩潰了",
                "at 9 or 10 layers the whole result collapses",
            ),
            Quote(
                S004,
                (73, 73),
                "這並不是 overfitting。這個是訓練時，就訓練失敗了。其中一個原因叫做 Vanishing Gradient",
                "this is not overfitting: training itself failed; one reason is the vanishing gradient",
            ),
            Quote(
                S004,
                (107, 107),
                "它最重要的理由是它可以處理 Vanishing gradient 的問題",
                "(ReLU's) most important reason is that it handles the vanishing-gradient problem",
            ),
        ],
        "on a deep network ReLU trains where sigmoid fails (vanishing gradient): better optimization; the lecture's "
        "point is the training result, generalization is not claimed",
        "a deep network (8 layers), deep enough for sigmoid's gradients to vanish; each arm at its own η",
    ),
    _c(
        "leaky_relu",
        "Leaky ReLU (vs ReLU)",
        "function_set",
        "better",
        None,
        "inferred",
        [
            Quote(
                S004,
                (131, 131),
                "input 小於 0 的時候，output 是 input 乘上 0.01，這個函數叫做 Leaky ReLU",
                "for input below 0 the output is the input times 0.01: this is leaky ReLU",
            ),
            Quote(
                S004,
                (131, 131),
                "在這個時候微分是 0，就沒有辦法 update 參數了",
                "(with ReLU, for negative input) the derivative is 0 and the parameters cannot be updated",
            ),
            Q_RELU_VARIANTS,
        ],
        "leaky ReLU trains better than ReLU (units with negative input still get a gradient); the lecture gives only "
        "the motivation, in its 'bad training results' branch: the result is our inference",
        "a deep plain ReLU network where dead units can matter; each arm at its own η",
    ),
    _c(
        "prelu",
        "Parametric ReLU (vs ReLU)",
        "function_set",
        "better",
        None,
        "inferred",
        [
            Quote(S004, (133, 133), "就有人提出了 Parametric ReLU", "so Parametric ReLU was proposed"),
            Quote(
                S004,
                (133, 133),
                "α 是一個 network 的參數，它可以透過 training data 被學出來",
                "α is a network parameter, learned from the training data",
            ),
            Q_RELU_VARIANTS,
        ],
        "PReLU (a learned negative slope α) trains better than ReLU; the lecture gives only the motivation, in its "
        "'bad training results' branch: the result is our inference",
        "a deep plain ReLU network; each arm at its own η",
    ),
    _c(
        "maxout",
        "Maxout (vs ReLU)",
        "function_set",
        "better",
        None,
        "inferred",
        [
            Quote(
                S004,
                (137, 139),
                "ReLU is a special cases of Maxout\n\n- Learnable activation function [Ian J. Goodfellow, ICML'13]",
                "ReLU is a special case of maxout; a learnable activation function",
            ),
            Quote(
                S004,
                (146, 146),
                "Maxout network 會讓 network 自動學它的 activation function",
                "a maxout network learns its own activation function",
            ),
            Q_RELU_VARIANTS,
        ],
        "maxout trains better than ReLU at a matched parameter count; the lecture calls maxout a learnable "
        "activation of which ReLU is a special case, in its 'bad training results' branch: 'trains better' is our "
        "inference",
        "parameter-matched networks (maxout [40, 40] against ReLU [64, 64]); each arm at its own η",
    ),
    _c(
        "depth_degradation",
        "56 vs 20 layers: do not always blame overfitting",
        "function_set",
        "worse",
        "worse",
        "lecture",
        [
            Q_DEGRADE,
            Quote(
                S004,
                (37, 37),
                "會發現在 training set 上，20 層的 neural network 的表現本來就比 56 層好",
                "on the training set the 20-layer network was already better than the 56-layer one",
            ),
            Quote(
                S004,
                (40, 40),
                "這並不是 overfitting，而在訓練時就沒有訓練好",
                "this is not overfitting: it was not trained well in the first place",
            ),
            Quote(
                S004,
                (35, 35),
                "可以觀察到 56 層的 network 的 error rate 比較高",
                "the 56-layer network's (test) error rate is higher",
            ),
        ],
        "the deeper plain network is worse on the test data and already worse on the training data: a training "
        "problem, not overfitting (worse optimization and worse generalization)",
        "plain networks (no skip connection, no normalization) of 20 and 56 layers, each at its own η, equal updates",
    ),
    _c(
        "dropout_relu_vs_sigmoid",
        "Dropout with ReLU (vs with sigmoid)",
        "function_set",
        None,
        "better",
        "lecture",
        [
            Quote(
                S004,
                (555, 557),
                "dropout 確實在用 ReLU 或 Maxout network 的時候，它的 performance 是確實比較\n\n好的",
                "dropout's performance is indeed better with ReLU or maxout networks",
            ),
            Quote(
                S004,
                (553, 553),
                "只有是 linear 的 network ensemble 才會等於 multiply 一個 weight",
                "only for a linear network does the ensemble equal multiplying the weights",
            ),
        ],
        "dropout works better with ReLU (closer to linear, where the weight-scaled network equals the ensemble) than "
        "with sigmoid: the test loss ratio with/without dropout under ReLU is lower than under sigmoid (an "
        "interaction, judged on a 2 x 2 design; the activation's own effect cancels); training is not claimed",
        OVERFITS + "; dropout (at its own rate) against none, under ReLU with He initialization and under sigmoid "
        "with Glorot initialization",
    ),
    _c(
        "dropout_test_scaling",
        "Dropout: test-time weight scaling (vs none)",
        "optimization",
        "better",
        "better",
        "lecture",
        [Q_DROPOUT_SCALE, Q_DROPOUT_SCALE_TALK, Q_DROPOUT_2Z, Q_DROPOUT_Z],
        "classic dropout must multiply the weights by 1 − p at test time: without it the test-time pre-activations "
        "are about 1/(1 − p) times too large (z' ≈ 2z at p = 50%), so every evaluation-mode loss (training split and "
        "test split, no dropout at evaluation) is worse; measured: evaluation-mode loss with and without the scaling",
        "classic (non-inverted) dropout at p = 0.5, evaluated without dropout, on the overfitting setting of the "
        "regularizer rows",
    ),
    # --- 我要找什麼: the loss and the data --------------------------------------------------------------
    _c(
        "accuracy_loss",
        "Cross-entropy (vs accuracy as loss)",
        "loss",
        "better",
        "not better",
        "lecture",
        [
            Q_ACC_LOSS,
            Quote(
                S000,
                (1540, 1540),
                "For classification, if we use accuracy as the loss function …",
                "for classification, if we use accuracy as the loss function …",
            ),
            Quote(S000, (1545, 1545), "無法下坡", "(the accuracy loss surface is flat:) it cannot go downhill"),
        ],
        "do not use accuracy as the loss: cross-entropy gives better optimization (accuracy has zero gradient almost "
        "everywhere), not for generalization",
        "the same network and data; each loss at its own η (accuracy's gradient is zero at every η)",
    ),
    _c(
        "mse_loss",
        "Cross-entropy (vs MSE)",
        "loss",
        "better",
        None,
        "linked lecture",
        [Q_CE, Q_WHY_CE],
        "cross-entropy trains a classifier better than MSE (the linked 'Why Cross-entropy?' lecture: MSE's gradient "
        "is small far from the target); the seeds only link the argument; generalization not claimed",
        "each loss at its own η, compared in accuracy as well as loss (the two losses are on different scales)",
    ),
    _c(
        "hinge",
        "Cross-entropy (vs multi-class hinge)",
        "loss",
        "not better",
        "not better",
        "linked lecture",
        [Q_OTHER_LOSS, Q_CE],
        "hinge loss is one of the 'other possibilities' for a differentiable stand-in for accuracy (a link to another "
        "lecture only): cross-entropy is not expected to train or generalize better than hinge, each at its own η",
        "each loss at its own η, compared in accuracy as well as loss (the two losses are on different scales)",
    ),
    _c(
        "more_data",
        "More training data",
        "loss",
        "not better",
        "better",
        "lecture",
        [
            Quote(
                S000,
                (1622, 1623),
                "More training data 我要找甚麼 Better Generalization\nNot for Optimization",
                "more training data: step 'what we want'; better generalization, not for optimization",
            ),
            Quote(
                S000,
                (1616, 1618),
                "Collecting more training data\n\n(be careful about the representative)",
                "collecting more training data (be careful that it is representative)",
            ),
        ],
        "more training data: better generalization, not for optimization",
        OVERFITS + "; equal updates (not equal epochs: more data at equal epochs also means more updates)",
    ),
    _c(
        "mixup",
        "Data augmentation (mixup)",
        "loss",
        "not better",
        "better",
        "lecture",
        [Q_AUGMENT, Quote(S000, (1685, 1685), "https://arxiv.org/abs/1710.09412", "the linked mixup paper")],
        "data augmentation (e.g. mixup): better generalization, not for optimization",
        OVERFITS + "; α tuned on validation",
    ),
    _c(
        "flip",
        "Augmentation that flips digits",
        "loss",
        None,
        "worse",
        "lecture",
        [
            Quote(S000, (1657, 1657), "Be careful about what you augment", "be careful about what you augment"),
            Quote(
                S000,
                (1671, 1673),
                "flip blurry \n\nright right right",
                "a flipped 'right' sign keeps the label 'right': the augmentation changed what the input means",
            ),
        ],
        "an augmentation that changes what the input means (mirrored digits) hurts: worse generalization (the "
        "lecture's warning); nothing is said about training",
        "an augmentation that does not preserve labels for some classes (mirrored digits)",
    ),
    _c(
        "entropy",
        "Semi-supervised: entropy minimization",
        "loss",
        "not better",
        "better",
        "lecture",
        [
            Q_SEMI,
            Quote(
                S000,
                (1745, 1756),
                "entropy distribution",
                "the unlabeled loss l'(f(x)) is the entropy of the "
                "output distribution: smaller entropy, 非黑即白的世界 (a black-or-white world)",
            ),
        ],
        "semi-supervised learning (entropy minimization): better generalization, not for optimization",
        "few labels (100 digits) and many unlabeled ones, trained to convergence; the weight λ tuned on validation",
    ),
    _c(
        "graph",
        "Semi-supervised: graph smoothness",
        "loss",
        "not better",
        "better",
        "lecture",
        [
            Q_SEMI,
            Quote(
                S000,
                (1770, 1771),
                "物以類聚\n的世界",
                "a world where like attracts like: connected (similar) inputs should get similar outputs",
            ),
        ],
        "semi-supervised learning (graph smoothness): better generalization, not for optimization",
        "few labels (100 digits) and many unlabeled ones, trained to convergence; the weight λ tuned on validation",
    ),
    # --- batch size (003) ---------------------------------------------------------------------------------
    _c(
        "batch_size",
        "Small batch (vs large)",
        "optimization",
        None,
        "better",
        "lecture",
        [
            Quote(
                S003,
                (297, 297),
                "Table 2: Performance of small-batch (SB) and large-batch (LB) variants of ADAM",
                "Keskar et al.'s table: SB and LB reach the same training accuracy, LB a lower testing accuracy",
            ),
            Quote(
                S003,
                (321, 321),
                "| 訓練後的模型效能                      | 可能較好          | 可能較差          |",
                "model quality after training: small batches possibly better, large batches possibly worse",
            ),
            Quote(
                S003,
                (318, 318),
                "| 訓練穩定性                         | 較不穩定          | 較穩定           |",
                "training stability: small batches less stable, large batches more stable",
            ),
        ],
        "small batches possibly generalize better than large ones at the same training accuracy (Keskar et al.'s "
        "table, a sharper minimum for the large batch); the training half is the regime (equal training loss), not a "
        "claim; 'possibly' (可能) is the lecture's hedge",
        "both batch sizes reach the same training loss (Keskar's comparison, not equal epochs); each at its own η; "
        "sharpness of the reached minimum reported",
    ),
    _c(
        "full_batch",
        "Mini-batch SGD (vs full-batch GD)",
        "optimization",
        "better",
        None,
        "lecture",
        [
            Quote(
                S003,
                (266, 266),
                "對深度學習模型來說,通常比較好,因為 full batch size 的方法 1 個 epoch 只會更新模型一次,容易跑到 local minimum 的位置",
                "for deep models (mini-batch) is usually better, because full batch updates the model once per "
                "epoch and easily ends in a local minimum",
            ),
            Quote(
                S003,
                (283, 283),
                "Easily falling into local minimum",
                "(full-batch GD's drawback) easily falling into a local minimum",
            ),
        ],
        "mini-batch training is usually better than full-batch GD at an equal number of epochs (39 updates per epoch "
        "against 1): lower training loss; generalization not claimed",
        "equal epochs (the lecture's argument is the number of updates per epoch); each arm at its own η",
    ),
]

CLAIMS: dict[str, Claim] = {c.name: c for c in CLAIMS_LIST}
