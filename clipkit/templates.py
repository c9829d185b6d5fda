"""Per-dataset prompt templates: Table 4 of the DeAR supplementary."""
from __future__ import annotations

CUSTOM_TEMPLATES: dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

DEFAULT_TEMPLATE = "a photo of a {}."


def template_for(dataset_name: str, override: str = "") -> str:
    """The template for ``dataset_name``; ``override`` (a config value) wins when set."""
    template = override or CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)
    if template.count("{}") != 1:
        raise ValueError(f"Prompt template {template!r} must contain exactly one '{{}}' for the class name")
    return template
