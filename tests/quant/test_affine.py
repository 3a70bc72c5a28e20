import pytest
import torch

from mixdq.core.bits import WEIGHT_BITS
from mixdq.quant.affine import act_qparams, fake_quantize, fake_quantize_weight, int_grid, quantize, weight_qparams
from mixdq.quant.config import ActQuantConfig, WeightQuantConfig
from mixdq.quant.observers import RangeObserver


def _weight(out=16, inp=64, seed=0):
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", WEIGHT_BITS)
def test_weight_codes_fit_the_grid_and_error_is_within_half_a_step(bits, symmetric):
    w = _weight()
    qp = weight_qparams(w, bits, WeightQuantConfig(symmetric=symmetric))
    q = quantize(w, qp)
    qmin, qmax = int_grid(bits, symmetric)
    assert q.min() >= qmin and q.max() <= qmax
    assert torch.equal(q, q.round())
    assert qp.scale.shape == (16, 1)  # one scale per output channel
    # min-max ranges cover every value, so rounding is the only error
    assert ((fake_quantize(w, qp) - w).abs() <= qp.scale / 2 + 1e-6).all()
    # and the grid is used: each channel's extreme lands on (or next to) the grid's end
    assert len(q.unique()) > 2 ** bits // 2


def test_error_shrinks_with_bits():
    w = _weight()
    errs = [(fake_quantize_weight(w, b, WeightQuantConfig()) - w).square().mean() for b in WEIGHT_BITS]
    assert all(a > b for a, b in zip(errs, errs[1:]))


def test_asymmetric_fits_a_one_sided_channel_better():
    w = _weight().abs()  # all positive: symmetric wastes the negative half of its grid
    err = lambda cfg: (fake_quantize_weight(w, 4, cfg) - w).square().mean()  # noqa: E731
    assert err(WeightQuantConfig(symmetric=False)) < 0.5 * err(WeightQuantConfig(symmetric=True))


def test_tiny_or_zero_channel_leaves_other_channels_alone():
    w = _weight()
    alone = fake_quantize_weight(w, 4, WeightQuantConfig())
    w2 = w.clone()
    w2[3] = 0.0
    w2[7] *= 1e-9
    both = fake_quantize_weight(w2, 4, WeightQuantConfig())
    assert torch.isfinite(both).all()
    assert torch.equal(both[3], torch.zeros_like(both[3]))
    keep = [i for i in range(16) if i not in (3, 7)]
    assert torch.equal(both[keep], alone[keep])
    # the tiny channel keeps its own resolution: relative error as for a normal channel
    rel = (both[7] - w2[7]).norm() / w2[7].norm()
    assert rel < 0.2


@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_range_search_never_worse_than_minmax(symmetric):
    w = _weight(out=32, inp=256)
    w[:, 0] *= 20  # outliers make clipping pay off
    mm = (fake_quantize_weight(w, 3, WeightQuantConfig(symmetric=symmetric)) - w).square().sum(1)
    mse = (fake_quantize_weight(w, 3, WeightQuantConfig(symmetric=symmetric, range_method="mse")) - w).square().sum(1)
    assert (mse <= mm + 1e-6).all()
    assert mse.sum() < 0.9 * mm.sum()


def test_conv_weights_get_per_output_channel_scales():
    w = torch.randn(8, 4, 3, 3)
    qp = weight_qparams(w, 8, WeightQuantConfig())
    assert qp.scale.shape == (8, 1, 1, 1)
    assert torch.allclose(qp.scale.flatten(), w.abs().amax(dim=(1, 2, 3)) / 127)


def test_activation_quantization_is_asymmetric_and_keeps_zero_exact():
    qp = act_qparams(-0.5, 3.0, 8)
    x = torch.tensor([0.0, -0.5, 3.0, 1.234, 10.0])
    y = fake_quantize(x, qp)
    assert y[0] == 0.0
    step = 3.5 / 255
    assert qp.scale.item() == pytest.approx(step)
    assert abs(y[1] + 0.5) <= step / 2 and abs(y[2] - 3.0) <= step / 2
    assert abs(y[3] - 1.234) <= step / 2
    assert abs(y[4] - 3.0) <= step / 2  # clipped to the calibrated range


def test_observer_averages_per_call_ranges():
    obs = RangeObserver(ActQuantConfig())
    obs.observe(torch.tensor([-1.0, 2.0]))
    obs.observe(torch.tensor([-3.0, 4.0]))
    assert obs.range == (-2.0, 3.0)
    ema = RangeObserver(ActQuantConfig(momentum=0.9))
    ema.observe(torch.tensor([-1.0, 2.0]))
    ema.observe(torch.tensor([-3.0, 4.0]))
    assert ema.range == pytest.approx((-1.2, 2.2))


def test_percentile_observer_ignores_rare_outliers():
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    x[:5] = 1000.0
    obs = RangeObserver(ActQuantConfig(observer="percentile", percentile=99.9))
    obs.observe(x)
    lo, hi = obs.range
    assert 2.5 < hi < 4.0 and -4.0 < lo < -2.5
    assert RangeObserver(ActQuantConfig()).config.observer == "minmax"
