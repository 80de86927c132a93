"""The 64-wide ResNet18 itself: size, summary, and one real training step."""

import torch

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
