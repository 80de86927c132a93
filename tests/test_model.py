"""The 64-wide ResNet18 itself: size, summary, and one real training step."""

import torch

from engine.ema import WeightEMA
from engine.model import count_parameters, create_model, model_summary


def test_full_width_resnet18_has_the_reference_parameter_count():
    model = create_model(num_classes=10, width=64)
    assert count_parameters(model) == 11_173_962
    for name in ("layer1", "layer2", "layer3", "layer4"):
        assert isinstance(getattr(model, name), torch.nn.Sequential)


def test_summary_matches_the_reference_figures():
    summary, text = model_summary(create_model(width=64), batch_size=64)
    assert summary["total_params"] == 11_173_962
    assert round(summary["total_mult_adds"] / 1e9, 2) == 35.55
    shapes = {layer["name"]: layer["output_shape"] for layer in summary["layers"]}
    assert shapes["layer3"] == [64, 256, 8, 8]
    assert "Total params: 11,173,962" in text


def test_full_width_forward_and_backward_on_a_few_images():
    torch.manual_seed(0)
    model = create_model(width=64)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    logits = model(x)
    assert logits.shape == (4, 10)
    torch.nn.functional.cross_entropy(logits, y).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_weight_ema_is_the_warmed_up_average_of_the_weights():
    """Set the weights to a new constant before each update: the EMA must equal the average
    computed by hand with the documented decay (1 + n) / (10 + n), capped at `decay`."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(model, decay=0.9)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    for n, value in enumerate([1.0, -2.0, 3.0, 0.5, 4.0, -1.0, 2.0, 8.0, 0.0, 5.0, -3.0, 1.0, 6.0], start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        model.train()(torch.randn(4, 3))  # moves BatchNorm's statistics and its batch counter
        ema.update(model)
        keep = min(0.9, (1 + n) / (10 + n))
        expected = {k: keep * v + (1 - keep) * value for k, v in expected.items()}
    ours = dict(ema.module.named_parameters())
    for name, value in expected.items():
        assert torch.allclose(ours[name], value, atol=1e-6), name
    assert ema.module[1].num_batches_tracked == model[1].num_batches_tracked == 13
    restored = WeightEMA(model, decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 13 and torch.equal(restored.module[0].weight, ema.module[0].weight)
