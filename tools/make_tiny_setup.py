"""Generate a tiny offline setup: a random tiny CLIP ViT (OpenAI's ``clip.model.CLIP`` class), a head-roles
file for it, and a fake DTD tree in CoOp's layout whose classes differ by colour.

    python -m tools.make_tiny_setup --out output/tiny_setup

This exercises the whole pipeline (loader, data, trainers, scripts) without downloads. The tiny CLIP is
untrained, so its zero-shot accuracy is at chance; pretrained weights are what make numbers meaningful.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp

from tools.fake_data import make_split_dataset, write_tiny_roles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="output/tiny_setup")
    p.add_argument("--classes", type=int, default=10)
    args = p.parse_args()
    from clipkit.tiny import build_clip, save_clip

    os.makedirs(args.out, exist_ok=True)
    clip_path = osp.join(args.out, "tiny_clip.pt")
    if not osp.exists(clip_path):
        save_clip(build_clip(), clip_path)
    roles = write_tiny_roles(osp.join(args.out, "tiny_roles.json"))
    data = osp.join(args.out, "data")
    if not osp.exists(osp.join(data, "dtd")):
        make_split_dataset(data, "DescribableTextures", n_classes=args.classes, per_split=(16, 4, 8))
    print(f"CLIP={clip_path}\nROLES={roles}\nDATA={data}")


if __name__ == "__main__":
    main()
