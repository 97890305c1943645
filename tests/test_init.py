"""Weight initialisation: fans, the variance of each scheme, determinism, roles and errors.

The variance test draws n = 204,800 values per case and accepts the sample variance within
5 standard errors of the formula (see :func:`variance_se`), the sample mean within 5 standard
errors of 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.errors import ShapeError
from cnnlab.init import (
    Distribution,
    ParamSpec,
    Scheme,
    draw_weight,
    fans,
    init_params,
    weight_variance,
)

CONV_SHAPE = (128, 64, 5, 5)  # fan_in 1600, fan_out 3200; 204,800 values
LINEAR_SHAPE = (512, 400)  # fan_in 400, fan_out 512; 204,800 values
N_SE = 5.0

# Kurtosis mu4 / sigma^4 of each law: 3 for the normal, 9/5 for the uniform.
KURTOSIS = {"normal": 3.0, "uniform": 9.0 / 5.0}

EXPECTED_VARIANCE = {
    # scheme: variance as a function of (fan_in, fan_out), written out independently of the code
    "xavier": lambda fi, fo: 1.0 / fi,
    "glorot": lambda fi, fo: 2.0 / (fi + fo),
    "kaiming": lambda fi, fo: 2.0 / fi,
    "normal": lambda fi, fo: NORMAL_STD**2,  # the fans aside
}
NORMAL_STD = 0.05  # the std the normal scheme is checked at (the others take none)


def variance_se(var: float, n: int, kurtosis: float) -> float:
    """Standard error of the unbiased sample variance s² of n i.i.d. draws.

    Var(s²) = σ⁴ (κ/n − (n − 3)/(n(n − 1))), with κ = μ4/σ⁴ the kurtosis.
    Normal (κ = 3): Var(s²) = 2σ⁴/(n − 1), so se = σ² sqrt(2/(n − 1)).
    Uniform (κ = 9/5): Var(s²) = σ⁴ (0.8n + 1.2)/(n(n − 1)) ≈ 0.8σ⁴/n, so se ≈ σ² sqrt(0.8/n):
    the uniform has lighter tails than the normal, so its sample variance is steadier.
    """
    return var * math.sqrt(kurtosis / n - (n - 3) / (n * (n - 1)))


def test_variance_se_matches_closed_forms():
    n = 1000
    assert variance_se(1.0, n, 3.0) == pytest.approx(math.sqrt(2 / (n - 1)))
    assert variance_se(1.0, n, 1.8) == pytest.approx(math.sqrt((0.8 * n + 1.2) / (n * (n - 1))))


@pytest.mark.parametrize("shape", [CONV_SHAPE, LINEAR_SHAPE], ids=["conv", "linear"])
@pytest.mark.parametrize("distribution", list(Distribution))
@pytest.mark.parametrize("scheme", list(Scheme))
def test_weight_statistics_match_formula(scheme, distribution, shape):
    fan_in, fan_out = fans(shape)
    var = EXPECTED_VARIANCE[scheme](fan_in, fan_out)
    std = NORMAL_STD if scheme == "normal" else None
    assert weight_variance(scheme, fan_in, fan_out, std) == pytest.approx(var, rel=1e-15)

    # A seed per case: with one shared seed every case would rescale the same draws, and the
    # 12 checks would be 2.
    seed = [list(Scheme).index(scheme), list(Distribution).index(distribution), len(shape)]
    w = draw_weight(np.random.default_rng(seed), shape, scheme, distribution, std=std)
    assert w.shape == shape
    assert w.dtype == np.float64
    n = w.size
    assert n >= 200_000

    sample_var = w.var(ddof=1)
    se = variance_se(var, n, KURTOSIS[distribution])
    assert abs(sample_var - var) < N_SE * se, (
        f"{scheme}/{distribution} {shape}: sample variance {sample_var:.6g}, expected {var:.6g} "
        f"± {N_SE * se:.3g} ({(sample_var - var) / se:+.2f} se)"
    )
    assert abs(w.mean()) < N_SE * math.sqrt(var / n)

    if distribution == "uniform":
        a = math.sqrt(3.0 * var)
        assert np.abs(w).max() <= a
        assert np.abs(w).max() > 0.99 * a  # the draws fill the interval
    else:
        # A normal has tails past sqrt(3·var); with 200k draws some land there.
        assert np.abs(w).max() > math.sqrt(3.0 * var)


def test_fans_conv_and_linear():
    assert fans((32, 3, 7, 7)) == (3 * 7 * 7, 32 * 7 * 7)
    assert fans((6, 1, 5, 3)) == (1 * 5 * 3, 6 * 5 * 3)  # non-square kernel
    assert fans((100, 8192)) == (8192, 100)  # (D_out, D_in)


@pytest.mark.parametrize("shape", [(10,), (4, 3, 3), (2, 3, 4, 5, 6)])
def test_fans_rejects_other_ranks(shape):
    with pytest.raises(ShapeError, match="4-D"):
        fans(shape)
    with pytest.raises(ShapeError):
        draw_weight(np.random.default_rng(0), shape, "kaiming")


@pytest.mark.parametrize("distribution", list(Distribution))
def test_same_seed_same_weights_different_seed_different(distribution):
    def draw(seed):
        return draw_weight(np.random.default_rng(seed), (16, 3, 3, 3), "kaiming", distribution)

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


SPECS = [
    ParamSpec("conv1.w", (8, 3, 3, 3), "weight"),
    ParamSpec("conv1.b", (8,), "bias"),
    ParamSpec("bn1.gamma", (8,), "gamma"),
    ParamSpec("bn1.beta", (8,), "beta"),
    ParamSpec("fc.w", (10, 32), "weight"),
    ParamSpec("fc.b", (10,), "bias"),
]


def test_init_params_roles_and_shapes():
    params = init_params(SPECS, "kaiming", "normal", np.random.default_rng(0))
    assert list(params) == [s.name for s in SPECS]
    for spec in SPECS:
        assert params[spec.name].shape == spec.shape
        assert params[spec.name].dtype == np.float64
    np.testing.assert_array_equal(params["conv1.b"], np.zeros(8))
    np.testing.assert_array_equal(params["bn1.beta"], np.zeros(8))
    np.testing.assert_array_equal(params["fc.b"], np.zeros(10))
    np.testing.assert_array_equal(params["bn1.gamma"], np.ones(8))
    assert np.all(params["conv1.w"] != 0)


@pytest.mark.parametrize("distribution", list(Distribution))
def test_init_params_draws_weights_in_order(distribution):
    """The weights are the scheme's draws from one generator, in the order of the specs."""
    params = init_params(SPECS, "glorot", distribution, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    w1 = draw_weight(rng, (8, 3, 3, 3), "glorot", distribution)
    w2 = draw_weight(rng, (10, 32), "glorot", distribution)
    np.testing.assert_array_equal(params["conv1.w"], w1)
    np.testing.assert_array_equal(params["fc.w"], w2)

    again = init_params(SPECS, "glorot", distribution, np.random.default_rng(3))
    for name in params:
        np.testing.assert_array_equal(params[name], again[name])

    # Non-weight specs draw nothing: dropping them leaves the weights unchanged.
    weights_only = [s for s in SPECS if s.role == "weight"]
    fewer = init_params(weights_only, "glorot", distribution, np.random.default_rng(3))
    np.testing.assert_array_equal(fewer["fc.w"], w2)

    # Another order gives other values to the same names.
    swapped = init_params(SPECS[::-1], "glorot", distribution, np.random.default_rng(3))
    assert not np.array_equal(swapped["fc.w"], params["fc.w"])


@pytest.mark.parametrize("distribution", list(Distribution))
def test_float32_is_the_float64_draw_rounded(distribution):
    p64 = init_params(SPECS, "xavier", distribution, np.random.default_rng(5))
    p32 = init_params(SPECS, "xavier", distribution, np.random.default_rng(5), dtype=np.float32)
    for name, value in p32.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, p64[name].astype(np.float32))
    w32 = draw_weight(np.random.default_rng(5), (4, 6), "kaiming", distribution, np.float32)
    assert w32.dtype == np.float32


def test_unknown_scheme_lists_choices():
    with pytest.raises(
        ValueError, match="'he' is not a Scheme; choose from xavier, glorot, kaiming, normal"
    ):
        weight_variance("he", 10, 10)
    with pytest.raises(ValueError, match="'he' is not a Scheme"):
        draw_weight(np.random.default_rng(0), (4, 4), "he")
    with pytest.raises(ValueError, match="'he' is not a Scheme"):
        init_params([], "he", "normal", np.random.default_rng(0))


def test_the_normal_scheme_needs_a_std_and_only_it_takes_one():
    with pytest.raises(ValueError, match="init=normal needs a std"):
        weight_variance("normal", 10, 10)
    with pytest.raises(ValueError, match="init=kaiming scales by the fans"):
        init_params(SPECS, "kaiming", "normal", np.random.default_rng(0), std=0.1)


def test_init_normal_reaches_the_weights_from_the_config():
    from cnnlab.config import compose
    from cnnlab.models import instantiate

    cfg = compose("train", ["model=lenet", "init=normal", "init.std=0.02"])
    model = instantiate(cfg.model, cfg.norm, cfg.init, (3, 32, 32), np.random.default_rng(0))
    weights = [v for k, v in model.params.items() if k.endswith(".w")]
    assert len(weights) == 5
    # fc1.w (120 x 400) alone holds 48,000 draws: its std is within 2% of 0.02.
    for w in weights:
        assert w.std() == pytest.approx(0.02, rel=0.02 if w.size > 40_000 else 0.15)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["init=kaiming", "init.std=0.1"], "init=kaiming scales by the fans"),
        (["init=normal", "init.std=null"], "init=normal needs"),
        (["init=normal", "init.std=0"], "must be > 0"),
    ],
)
def test_a_std_where_it_does_not_belong_is_a_usage_error(overrides, message):
    from cnnlab.config import compose
    from cnnlab.errors import UsageError

    with pytest.raises(UsageError, match=message):
        compose("train", overrides)


def test_unknown_distribution_lists_choices():
    with pytest.raises(
        ValueError, match="'laplace' is not a Distribution; choose from normal, uni"
    ):
        draw_weight(np.random.default_rng(0), (4, 4), "kaiming", "laplace")
    with pytest.raises(ValueError, match="'laplace' is not a Distribution"):
        init_params([], "kaiming", "laplace", np.random.default_rng(0))


def test_unknown_role_lists_choices():
    with pytest.raises(
        ValueError, match=r"'kernel' is not a Role; choose from weight, bias, gamma, beta"
    ):
        ParamSpec("fc.w", (10, 32), "kernel")


def test_duplicate_name_is_an_error():
    specs = [ParamSpec("fc.w", (10, 32), "weight"), ParamSpec("fc.w", (10,), "bias")]
    with pytest.raises(ValueError, match="twice"):
        init_params(specs, "kaiming", "normal", np.random.default_rng(0))


def test_3d_weight_spec_is_a_shape_error():
    specs = [ParamSpec("conv1d.w", (8, 3, 5), "weight")]
    with pytest.raises(ShapeError, match=r"\(8, 3, 5\)"):
        init_params(specs, "kaiming", "normal", np.random.default_rng(0))


def test_config_options_match_schemes():
    from cnnlab.config import compose, group_options, option_summary

    assert group_options("init") == sorted(Scheme)
    for scheme in Scheme:
        cfg = compose("gradcheck", [f"init={scheme}"]).init
        std = 1e-3 if scheme == "normal" else None  # only init=normal takes a std
        assert cfg == {"name": scheme, "distribution": "normal", "std": std}
        assert option_summary("init", scheme).startswith(f"{scheme}: W ~ N(0, ")
