"""The models from the papers: torchvision's parameter counts, shapes, stems, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness.errors import UserInputError
from robustness.models import build_model

CIFAR = (3, 32, 32)
IMAGENET = (3, 224, 224)
ZOO = ["resnet18", "wrn18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "vit_tiny"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a busy 2-core machine, two threads contending with
    other processes made these small forward/backward passes over 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _count(name: str, shape: tuple[int, ...], classes: int, **args) -> int:
    """The parameter count, built on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        return _n_params(build_model(name, shape, classes, **args))


# torchvision's published num_params (its weights' metadata), 1000 ImageNet classes
@pytest.mark.parametrize(
    ("name", "args", "published"),
    [
        ("resnet18", {"stem": "imagenet"}, 11_689_512),
        ("resnet50", {}, 25_557_032),
        ("mobilenet_v3_small", {"stem": "imagenet"}, 2_542_856),
        ("mobilenet_v3_large", {"stem": "imagenet"}, 5_483_032),
        # vit_b_16: torchvision's ViT-B/16 settings through the same builder
        (
            "vit_tiny",
            {"patch": 16, "width": 768, "depth": 12, "heads": 12, "mlp": 3072},
            86_567_656,
        ),
    ],
)
def test_models_have_torchvisions_published_parameter_counts(name, args, published):
    assert _count(name, IMAGENET, 1000, **args) == published


def test_cifar_adaptations_have_the_hand_computed_counts():
    # CIFAR stem: a 3x3 conv (3*64*9 = 1,728) replaces the 7x7 (3*64*49 = 9,408),
    # and a 10-class head (512*10 + 10) replaces the 1000-class one (512*1000 + 1000)
    resnet18_cifar10 = 11_689_512 - 9_408 + 1_728 - 513_000 + 5_130
    assert resnet18_cifar10 == 11_173_962
    assert _count("resnet18", CIFAR, 10) == resnet18_cifar10
    # the INSGD paper's WResNet-18 on CIFAR-100: resnet18's CIFAR layout, 100 classes
    assert _count("wrn18", CIFAR, 100) == resnet18_cifar10 - 5_130 + 51_300 == 11_220_132
    # a stride changes no parameter: the CIFAR stem of MobileNetV3 keeps torchvision's count
    assert _count("mobilenet_v3_small", IMAGENET, 1000) == 2_542_856
    small_head = 1024 * 1000 + 1000
    assert _count("mobilenet_v3_small", CIFAR, 10) == 2_542_856 - small_head + 1024 * 10 + 10
    # vit_tiny: width w = 192, MLP m = 768, 12 blocks of 2 LayerNorms (4w), attention
    # (in-projection 3w*w + 3w, out-projection w*w + w) and MLP (2*w*m + m + w);
    # patch conv 3*4*4*w + w, class token w, 65 positions x w, final LayerNorm 2w, head
    w, m = 192, 768
    block = 4 * w + (4 * w * w + 4 * w) + (2 * w * m + m + w)
    vit = 12 * block + (48 * w + w) + w + 65 * w + 2 * w + (w * 10 + 10)
    assert vit == 5_362_762
    assert _count("vit_tiny", CIFAR, 10) == vit


def _stage_shapes(model: nn.Module, modules: list[nn.Module], shape) -> list[tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: seen.append(tuple(o.shape))) for m in modules
    ]
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, *shape))
    for h in hooks:
        h.remove()
    return seen


def test_the_cifar_stem_keeps_the_resolution_the_imagenet_stem_quarters():
    cifar = build_model("resnet18", CIFAR, 10)
    imagenet = build_model("resnet18", CIFAR, 10, stem="imagenet")
    assert _stage_shapes(cifar, [cifar.layer1, cifar.layer4], CIFAR) == [
        (1, 64, 32, 32),
        (1, 512, 4, 4),
    ]
    assert _stage_shapes(imagenet, [imagenet.layer1, imagenet.layer4], CIFAR) == [
        (1, 64, 8, 8),
        (1, 512, 1, 1),
    ]
    mobile = build_model("mobilenet_v3_small", CIFAR, 10)
    assert _stage_shapes(mobile, [mobile.features], CIFAR) == [(1, 576, 2, 2)]
    mobile = build_model("mobilenet_v3_small", CIFAR, 10, stem="imagenet")
    assert _stage_shapes(mobile, [mobile.features], CIFAR) == [(1, 576, 1, 1)]


def test_mobilenet_blocks_are_torchvisions():
    model = build_model("mobilenet_v3_large", CIFAR, 10)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 15 and all(m.groups == m.in_channels for m in depthwise)
    # squeeze-excitation: 72 channels squeeze to make_divisible(72 // 4, 8) = 24
    se = model.features[4].block[2]
    assert (se.fc1.in_channels, se.fc1.out_channels) == (72, 24)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert (bn.eps, bn.momentum) == (0.001, 0.01)
    residual = [m.use_res_connect for m in model.features[1:-1]]
    # 15 blocks minus the 4 strided ones and the 80 -> 112 one
    assert sum(residual) == 10


@pytest.mark.parametrize("name", ZOO)
def test_each_zoo_model_trains_a_few_steps_on_cifar_shaped_input(name):
    torch.manual_seed(0)
    model = build_model(name, CIFAR, 10)
    x, y = torch.randn(4, *CIFAR), torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    for _ in range(2):
        out = model(x)
        assert out.shape == (4, 10)
        loss = F.cross_entropy(out, y)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
    assert sum(changed) >= 0.9 * len(changed)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("resnet18", {"stem": "tiny"}, "cifar, imagenet"),
        ("resnet50", {"stem": 3}, "cifar, imagenet"),
        ("mobilenet_v3_small", {"stem": "none"}, "cifar, imagenet"),
        ("mobilenet_v3_large", {"dropout": 1.5}, "dropout"),
        ("vit_tiny", {"patch": 5}, "32x32 is not a multiple of patch=5"),
        ("vit_tiny", {"width": 100, "heads": 3}, "width=100 is not a multiple of heads=3"),
        ("vit_tiny", {"depth": 0}, "depth"),
        ("wrn18", {"stem": "cifar"}, "allowed: none"),
    ],
)
def test_bad_zoo_model_args_are_refused_naming_what_is_allowed(name, args, expected):
    with pytest.raises(UserInputError, match=expected):
        build_model(name, CIFAR, 10, **args)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_refuse_flat_input(name):
    with pytest.raises(UserInputError, match=r"\(C, H, W\)"):
        build_model(name, (40,), 10)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("name", "args", "tv_name", "tv_args"),
    [
        ("resnet18", {"stem": "imagenet"}, "resnet18", {}),
        ("resnet50", {}, "resnet50", {}),
        ("mobilenet_v3_small", {"stem": "imagenet"}, "mobilenet_v3_small", {}),
        ("mobilenet_v3_large", {"stem": "imagenet"}, "mobilenet_v3_large", {}),
        (
            "vit_tiny",
            {"patch": 16, "width": 768, "depth": 12, "heads": 12, "mlp": 3072},
            "vit_b_16",
            {},
        ),
    ],
)
def test_zoo_models_match_torchvision_tensor_for_tensor(name, args, tv_name, tv_args):
    # where torchvision imports (its wheels need the CUDA torch): the same tensors,
    # in the same order and shapes, under torchvision's or our own names
    tv_models = pytest.importorskip("torchvision.models")
    ours = build_model(name, IMAGENET, 1000, **args)
    theirs = getattr(tv_models, tv_name)(**tv_args)
    assert [tuple(p.shape) for p in ours.parameters()] == [
        tuple(p.shape) for p in theirs.parameters()
    ]
    assert [tuple(b.shape) for b in ours.buffers()] == [tuple(b.shape) for b in theirs.buffers()]
