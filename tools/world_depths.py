"""A method's official prompt depths, scaled from ViT-B/16's 12 layers to the world CLIP's, as command-line options.

    python -m tools.world_depths configs/maple.yaml output/world/tiny_world_clip.pt.json
    # -> TRAINER.MAPLE.PROMPT_DEPTH 3

The official configs prompt ViT-B/16 to a depth counted in its 12 layers (MaPLe 9, IVLP 12, PromptSRC 9,
MMRL's representation layers 6-12). The world's tiny CLIP has fewer layers (6 vision, 4 text, read from the
``settings`` its ``.pt.json`` records), where the trainers refuse those depths. The world keeps each method's
*share* of the layers: a depth ``d`` becomes ``ceil(d * L / 12)`` of a tower's ``L`` layers (a coupled depth,
prompting both towers, uses the smaller tower); a layer list maps every layer ``l`` to ``ceil(l * L / 12)``.
A config without such keys prints nothing. ``scripts/world_common.sh`` adds the output to every world run.
"""
from __future__ import annotations

import json
import math
import sys

import yaml

REFERENCE_LAYERS = 12  # ViT-B/16, the depth the official configs are written for
# key -> which tower's layer count it scales by ("both": the prompts enter both towers at these layers)
DEPTH_KEYS = {"PROMPT_DEPTH_VISION": "vision", "PROMPT_DEPTH_TEXT": "text", "PROMPT_DEPTH": "both"}
LAYER_LIST_KEYS = {"REP_LAYERS": "both"}


def scaled_depth_opts(config: dict, vision_layers: int, text_layers: int) -> list[str]:
    """``KEY VALUE`` overrides for every depth key under ``config["TRAINER"]``, scaled to the given towers."""
    layers = {"vision": vision_layers, "text": text_layers, "both": min(vision_layers, text_layers)}
    opts = []
    for node, keys in sorted((config.get("TRAINER") or {}).items()):
        if not isinstance(keys, dict):
            continue
        for key, value in sorted(keys.items()):
            if key in DEPTH_KEYS:
                n = layers[DEPTH_KEYS[key]]
                opts += [f"TRAINER.{node}.{key}", str(min(n, max(1, math.ceil(value * n / REFERENCE_LAYERS))))]
            elif key in LAYER_LIST_KEYS:
                n = layers[LAYER_LIST_KEYS[key]]
                scaled = sorted({min(n, max(1, math.ceil(v * n / REFERENCE_LAYERS))) for v in value})
                opts += [f"TRAINER.{node}.{key}", "[" + ",".join(map(str, scaled)) + "]"]
    return opts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tools.world_depths CONFIG.yaml CLIP.pt.json", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        config = yaml.safe_load(f) or {}
    with open(args[1]) as f:  # what tools.pretrain_world_clip records next to the weights
        settings = json.load(f)["settings"]
    print(" ".join(scaled_depth_opts(config, settings["vision_layers"], settings["transformer_layers"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
