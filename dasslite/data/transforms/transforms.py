"""Build torchvision pipelines from ``cfg.INPUT`` exactly as Dassl 0.6.3 does.

Training: the transforms listed in ``INPUT.TRANSFORMS``, in Dassl's fixed order (resize when there is no crop,
random crop, random resized crop, flip, colour jitter, grayscale, blur, to-tensor, normalize); every random
transform draws from the global torch RNG, so with the same seed the built-in engine and the real Dassl
augment each image identically. ``center_crop`` is accepted and, as in Dassl, only used at test time.
Test: resize the shorter side to ``max(INPUT.SIZE)``, center crop, to-tensor, normalize.
"""
from __future__ import annotations

from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    InterpolationMode,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

SUPPORTED_TRANSFORMS = (
    "random_resized_crop", "random_crop", "random_flip", "center_crop", "colorjitter", "randomgrayscale",
    "gaussian_blur", "normalize",
)
ALIASES = {"random_gray": "randomgrayscale"}  # the name earlier versions of this project used
DASSL_ONLY = (
    "random_translation", "cutout", "imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment",
    "randaugment_fixmatch", "randaugment2", "gaussian_noise", "instance_norm",
)


def build_transform(cfg, is_train: bool = True, choices=None) -> Compose | None:
    """Return the train or test pipeline for ``cfg.INPUT``; unknown names raise with the supported list."""
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    choices = [ALIASES.get(c, c) for c in (cfg.INPUT.TRANSFORMS if choices is None else choices)]
    dassl_only = [c for c in choices if c in DASSL_ONLY]
    if dassl_only:
        raise ValueError(f"INPUT.TRANSFORMS {dassl_only} exist in Dassl.pytorch but not in the built-in engine; "
                         f"install Dassl.pytorch or use {list(SUPPORTED_TRANSFORMS)}")
    unknown = [c for c in choices if c not in SUPPORTED_TRANSFORMS]
    if unknown:
        raise ValueError(f"INPUT.TRANSFORMS has unsupported {unknown}; supported: {list(SUPPORTED_TRANSFORMS)}")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(
            f"INPUT.INTERPOLATION={cfg.INPUT.INTERPOLATION!r}; choose one of {list(INTERPOLATION_MODES)}"
        )
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = cfg.INPUT.SIZE
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _train_transform(cfg, choices, size, interp, normalize)
    return _test_transform(choices, size, interp, normalize)


def _train_transform(cfg, choices, size, interp, normalize) -> Compose:
    print("Building transform_train")
    tfm = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {size[0]}x{size[1]}")
        tfm.append(Resize(size, interpolation=interp))
    if "random_crop" in choices:
        print(f"+ random crop (padding = {cfg.INPUT.CROP_PADDING})")
        tfm.append(RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        scale = cfg.INPUT.RRCROP_SCALE
        print(f"+ random resized crop (size={size}, scale={scale})")
        tfm.append(RandomResizedCrop(size, scale=scale, interpolation=interp))
    if "random_flip" in choices:
        print("+ random flip")
        tfm.append(RandomHorizontalFlip())
    if "colorjitter" in choices:
        print("+ color jitter")
        tfm.append(ColorJitter(brightness=cfg.INPUT.COLORJITTER_B, contrast=cfg.INPUT.COLORJITTER_C,
                               saturation=cfg.INPUT.COLORJITTER_S, hue=cfg.INPUT.COLORJITTER_H))
    if "randomgrayscale" in choices:
        print("+ random gray scale")
        tfm.append(RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={cfg.INPUT.GB_K})")
        tfm.append(RandomApply([GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    return Compose(tfm)


def _test_transform(choices, size, interp, normalize) -> Compose:
    print("Building transform_test")
    print(f"+ resize the smaller edge to {max(size)}")
    print(f"+ {size[0]}x{size[1]} center crop")
    tfm = [Resize(max(size), interpolation=interp), CenterCrop(size), ToTensor()]
    if "normalize" in choices:
        tfm.append(normalize)
    return Compose(tfm)
