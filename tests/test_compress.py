"""Compression techniques on tiny models: each test can fail, and each runs in well under a second."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402

from edgerun.compress import distill as kd  # noqa: E402
from edgerun.compress import prune as pr  # noqa: E402
from edgerun.compress.models import DigitsNet, count_params  # noqa: E402
from edgerun.compress.recipe import ModelConfig, PruneStep  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- distillation ---------------------------------------------------------------------


def test_kd_loss_equals_a_hand_computation():
    s = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 1.0]])
    t = torch.tensor([[3.0, 1.0, -1.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([0, 2])
    T, alpha = 3.0, 0.7

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    kl = 0.0
    for zs, zt in zip(s.tolist(), t.tolist()):
        ps, pt = softmax([v / T for v in zs]), softmax([v / T for v in zt])
        kl += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    kl /= 2  # batchmean: sum over classes, mean over the 2 samples (not over 6 elements)
    ce = -(math.log(softmax(s[0].tolist())[0]) + math.log(softmax(s[1].tolist())[2])) / 2
    expected = alpha * kl * T**2 + (1 - alpha) * ce
    got = kd.kd_loss(s, kd.soft_targets(t, T), y, T, alpha)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # The 'mean' reduction pitfall would be 3x smaller on the soft part: make sure we are not it.
    assert float(got) != pytest.approx(alpha * kl / 3 * T**2 + (1 - alpha) * ce, rel=1e-3)


def test_kd_loss_is_zero_soft_when_student_matches_teacher():
    z = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    only_soft = kd.kd_loss(z, kd.soft_targets(z, 4.0), torch.zeros(4, dtype=torch.long), 4.0, alpha_soft=1.0)
    # float32 round-off (softmax then log vs log_softmax), scaled by T^2 = 16; a real gap is >> 1e-5
    assert float(only_soft) == pytest.approx(0.0, abs=1e-5)


def test_teacher_aggregation():
    a = torch.tensor([[10.0, 0.0], [0.0, 0.0]])  # sure on sample 0, unsure on sample 1
    b = torch.tensor([[0.0, 0.0], [0.0, 10.0]])  # unsure on sample 0, sure on sample 1
    avg = kd.aggregate_teachers([a, b], 1.0, "average")
    assert torch.allclose(avg, (torch.softmax(a, -1) + torch.softmax(b, -1)) / 2)
    w = kd.aggregate_teachers([a, b], 1.0, "weighted", (3.0, 1.0))
    assert torch.allclose(w, 0.75 * torch.softmax(a, -1) + 0.25 * torch.softmax(b, -1))
    conf = kd.aggregate_teachers([a, b], 1.0, "confidence")
    assert conf[0, 0] > avg[0, 0] and conf[1, 1] > avg[1, 1]  # the sure teacher wins, per sample
    assert torch.allclose(conf.sum(-1), torch.ones(2))


def test_attention_map_and_loss():
    f = torch.zeros(1, 3, 2, 2)
    f[0, :, 0, 0] = 2.0
    assert torch.allclose(kd.attention_map(f), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    wide = torch.cat([f, f], dim=1)  # more channels, same spatial attention
    assert float(kd.attention_loss(f, wide)) == pytest.approx(0.0, abs=1e-6)
    g = torch.zeros(1, 3, 2, 2)
    g[0, :, 1, 1] = 1.0
    assert float(kd.attention_loss(f, g)) == pytest.approx(math.sqrt(2), rel=1e-6)


def test_feature_adapter_and_tap():
    teacher, student = DigitsNet(ModelConfig(width=0.5, depth=2)), DigitsNet(ModelConfig(width=0.25, depth=2))
    tt, ts = kd.FeatureTap(teacher, ["features.2"]), kd.FeatureTap(student, ["features.2"])
    x = torch.randn(2, 1, 8, 8)
    teacher(x), student(x)
    ft, fs = tt.outputs["features.2"], ts.outputs["features.2"]
    assert ft.shape[1] == 2 * fs.shape[1]
    adapter = kd.FeatureAdapter(fs.shape[1], ft.shape[1])
    loss = kd.feature_loss(fs, ft.detach(), adapter)
    loss.backward()
    assert adapter.proj.weight.grad is not None  # the adapter learns
    with pytest.raises(ValueError, match="no layer named"):
        kd.FeatureTap(student, ["features.99"])


# --- pruning --------------------------------------------------------------------------


def _lin(weights):
    m = nn.Linear(len(weights), 1, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([weights]))
    return nn.Sequential(m)


def test_magnitude_threshold_is_the_lectures_example():
    model = _lin([0.8, 0.3, -0.5, 0.1, -0.9])
    pr.magnitude_prune(model, threshold=0.4)
    pr.make_permanent(model)
    assert model[0].weight.tolist() == [[pytest.approx(0.8), 0.0, pytest.approx(-0.5), 0.0, pytest.approx(-0.9)]]
    assert pr.weight_sparsity(model) == pytest.approx(0.4)


def test_global_vs_layer_magnitude_pruning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 50), nn.Linear(50, 10))
    with torch.no_grad():
        model[1].weight.mul_(100)  # layer 2 has the big weights
    g = pr.make_permanent(_copy(model, lambda m: pr.magnitude_prune(m, amount=0.5, scope="global")))
    per_layer = pr.make_permanent(_copy(model, lambda m: pr.magnitude_prune(m, amount=0.5, scope="layer")))
    assert pr.weight_sparsity(g) == pytest.approx(0.5, abs=1e-3)
    assert pr.weight_sparsity(per_layer) == pytest.approx(0.5, abs=1e-3)
    assert float((g[1].weight == 0).float().mean()) < 0.01  # global keeps the big layer whole
    assert float((per_layer[1].weight == 0).float().mean()) == pytest.approx(0.5)


def _copy(model, fn):
    import copy

    m = copy.deepcopy(model)
    fn(m)
    return m


def test_channel_pruning_removes_parameters():
    model = DigitsNet(ModelConfig(width=0.5, depth=3)).eval()
    x = torch.randn(1, 1, 8, 8)
    before = count_params(model)
    pr.channel_prune(model, x, 0.5)
    assert count_params(model) < 0.5 * before
    assert model(x).shape == (1, 10)  # still a valid 10-class model


def _out_channels(model) -> list[int]:
    return [m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features for _, m in pr.prunable(model)]


def test_channel_pruning_scope_layer_is_per_layer_and_global_is_not():
    """scope "layer": 25% of each layer (rounded to 4); "global" (the recipe default): 25% of all channels
    ranked together, so the layers lose different shares (docs/compress.md says which)."""
    torch.manual_seed(0)
    model = DigitsNet(ModelConfig(width=1.0, depth=6)).eval()
    x = torch.randn(1, 1, 16, 16)
    before = _out_channels(model)[:-1]  # the classifier's outputs (the classes) are never pruned
    per_layer = _out_channels(_copy(model, lambda m: pr.channel_prune(m, x, 0.25, "layer")))[:-1]
    assert per_layer == [c - c // 4 for c in before]
    global_ = _out_channels(_copy(model, lambda m: pr.channel_prune(m, x, 0.25, "global")))[:-1]
    shares = {round(1 - a / b, 2) for a, b in zip(global_, before)}
    assert len(shares) > 1 and abs(1 - sum(global_) / sum(before) - 0.25) < 0.05
    assert PruneStep(name="p", source="s").scope == "global"


def test_lottery_rewind_restores_saved_weights_and_keeps_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 5))
    init = pr.snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "training"
    pr.magnitude_prune(model, amount=0.5)
    pr.rewind(model, init)
    for i in (0, 1):
        assert torch.equal(model[i].weight_orig, init[f"{i}.weight"])
        assert torch.equal(model[i].bias, init[f"{i}.bias"])
    pr.make_permanent(model)
    assert pr.weight_sparsity(model) == pytest.approx(0.5, abs=0.01)
    kept = model[0].weight != 0
    assert torch.equal(model[0].weight[kept], init["0.weight"][kept])


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_dynamic_sparsity_is_constant_while_masks_move(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 3))
    dyn = pr.DynamicSparsity(model, 0.8, method, 0.3, 5, 100, np.random.default_rng(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first = [m.clone() for m in dyn.masks]
    x, y = torch.randn(64, 30), torch.randint(0, 3, (64,))
    for step in range(1, 51):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        dyn.after_step(step)
        assert dyn.sparsity() == pytest.approx(0.8, abs=0.01)
        assert pr.weight_sparsity(model) >= 0.8 - 0.01  # the weights obey the masks
    assert dyn.updates == 10
    assert any(not torch.equal(a, b) for a, b in zip(first, dyn.masks))  # connectivity changed
