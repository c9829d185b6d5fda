"""The built-in world: its data sets, captions, reproducible pretraining, the shipped tiny CLIP, the demo chain."""
import dataclasses
import glob
import hashlib
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, make_cfg

from tools import world

RUN_ENV = dict(os.environ, CLIP_OFFLINE="1", PYTHONWARNINGS="ignore")


def _tree_digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path) and not path.endswith("world.json"):
            h.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_every_dataset_hinges_on_its_attributes_and_splits_base_new_sensibly(monkeypatch):
    sizes = {"world_color": 10, "world_texture": 8, "world_shape": 10, "world_position": 9, "world_mixed": 24}
    assert set(world.DATASETS) == set(sizes)
    for name, spec in world.DATASETS.items():
        classes = world.dataset_classes(name, seed=0)
        assert len(classes) == len(set(classes)) == sizes[name]
        assert all(len(c) == len(spec.defining) for c in classes)
        assert world.dataset_classes(name, seed=0) == classes and world.dataset_classes(name, seed=1) != classes
    mixed = world.dataset_classes("world_mixed")
    spec = world.DATASETS["world_mixed"]
    assert spec.novel == "color"
    colors = [{c[0] for c in half} for half in (mixed[:12], mixed[12:])]
    assert not colors[0] & colors[1] and colors[0] | colors[1] == set(spec.values("color"))  # new classes: new colours
    assert (len(colors[0]), len(colors[1])) == (3, 2)  # five colours, base gets the larger half
    for half, half_colors in zip((mixed[:12], mixed[12:]), colors):
        for i, a in enumerate(spec.defining):
            values = sorted(half_colors) if a == "color" else spec.values(a)  # texture, shape: all on both sides
            counts = [sum(c[i] == v for c in half) for v in values]
            assert min(counts) >= 1 and max(counts) - min(counts) <= 1, (a, counts)  # none names a class alone
    for bad in ("position", "colour"):  # not a defining attribute: refused, not silently ignored
        with pytest.raises(ValueError, match="must be one of its defining attributes"):
            dataclasses.replace(spec, novel=bad)
    with pytest.raises(ValueError, match="only a data set with several"):
        dataclasses.replace(world.DATASETS["world_color"], novel="color")
    monkeypatch.setitem(world.DATASETS, "world_mixed", dataclasses.replace(spec, novel=""))
    both = world.dataset_classes("world_mixed")  # without it every value is on both sides
    assert {c[0] for c in both[:12]} == {c[0] for c in both[12:]} == set(spec.values("color"))
    position = [p for (p,) in world.dataset_classes("world_position")]
    for half in (position[:5], position[5:]):  # every row and column word on both sides
        cells = [world._row_col(p) for p in half]
        assert {r for r, _ in cells} == {"top", "center", "bottom"}
        assert {c for _, c in cells} == {"left", "center", "right"}


def test_render_is_deterministic_and_attributes_show():
    a, _ = world.render("red", "striped", "circle", "top left", np.random.default_rng(0))
    b, _ = world.render("red", "striped", "circle", "top left", np.random.default_rng(0))
    assert np.array_equal(a, b) and a.shape == (32, 32, 3)
    red, _ = world.render("red", "plain", "square", "center", np.random.default_rng(1))
    blue, _ = world.render("blue", "plain", "square", "center", np.random.default_rng(1))
    centre = (slice(13, 19), slice(13, 19))
    assert red[centre][..., 0].mean() > 150 > blue[centre][..., 0].mean()
    tl, _ = world.render("yellow", "plain", "square", "top left", np.random.default_rng(2))
    br, _ = world.render("yellow", "plain", "square", "bottom right", np.random.default_rng(2))
    assert tl[:12, :12].mean() > br[:12, :12].mean()
    plain, _ = world.render("green", "plain", "square", "center", np.random.default_rng(3))
    striped, _ = world.render("green", "striped", "square", "center", np.random.default_rng(3))
    assert 2 * plain[centre][..., 1].std() < striped[centre][..., 1].std()
    for s in world.SHAPES:  # every shape is visible wherever it is
        for p in world.POSITIONS:
            img, _ = world.render("yellow", "plain", s, p, np.random.default_rng(4))
            assert (img[..., 2] < 100).sum() >= 20, (s, p)


def test_captions_name_every_attribute_with_knobs():
    caps = [world.caption("red", "dotted", "ring", "top left", "dark", random.Random(i)) for i in range(200)]
    assert len(set(caps)) > 60
    for word in ("red", "ring", "left", "texture", "photo"):
        assert any(word in c for c in caps), word
    exact = [world.caption("red", "dotted", "ring", "top left", "dark", random.Random(i), noise=0.0, mention=1.0)
             for i in range(50)]
    assert all("red" in c and "ring" in c and "left" in c for c in exact)
    assert all(any(w in c for w in world.TEXTURE_WORDS["dotted"] + ["dots"]) for c in exact)
    noisy = [world.caption("red", "dotted", "ring", "top left", "dark", random.Random(i), noise=1.0, mention=1.0)
             for i in range(50)]
    assert not any(" red " in f" {c} " for c in noisy)


def test_datasets_read_with_base_new_and_configs_match(tmp_path):
    from dassl.data.datasets import build_dataset

    for name, spec in world.DATASETS.items():
        world.write_dataset(str(tmp_path), name, per_split=(2, 1, 2))
        with open(os.path.join(ROOT, "configs", "datasets", f"{name}.yaml")) as f:
            text = f.read()
        assert f'NAME: "{spec.dassl_name}"' in text and f'PROMPT_TEMPLATE: "{spec.template}"' in text
        names = [world.class_name(c) for c in world.dataset_classes(name)]
        n_base = (len(names) + 1) // 2
        for subsample, expected in (("base", names[:n_base]), ("new", names[n_base:])):
            cfg = make_cfg(**{"DATASET.ROOT": str(tmp_path), "DATASET.NAME": spec.dassl_name,
                              "DATASET.SUBSAMPLE_CLASSES": subsample})
            cfg.VERBOSE = False
            ds = build_dataset(cfg)
            assert ds.classnames == expected and len(ds.test) == 2 * len(expected)


def test_generation_is_deterministic_cached_and_independent_of_hash_seed(tmp_path):
    code = ("import sys; from tools import world; "
            "world.write_dataset(sys.argv[1], 'world_position', per_split=(2, 1, 1))")
    for i, hash_seed in enumerate(("1", "2")):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / f"r{i}")], cwd=ROOT,
                             env=dict(RUN_ENV, PYTHONHASHSEED=hash_seed), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert _tree_digest(tmp_path / "r0" / "world_position") == _tree_digest(tmp_path / "r1" / "world_position")
    split = tmp_path / "r0" / "world_position" / "split_zhou_WorldPosition.json"
    before = split.stat().st_mtime_ns
    world.write_dataset(str(tmp_path / "r0"), "world_position", per_split=(2, 1, 1))
    assert split.stat().st_mtime_ns == before  # cached: same settings
    (tmp_path / "r0" / "world_position" / "split_fewshot").mkdir()
    world.write_dataset(str(tmp_path / "r0"), "world_position", per_split=(3, 1, 1))
    assert len(json.loads(split.read_text())["train"]) == 27  # other settings: regenerated, stale caches gone
    assert not (tmp_path / "r0" / "world_position" / "split_fewshot").exists()


def test_domain_rotates_object_hue_only_and_never_touches_pretraining(tmp_path, monkeypatch):
    import colorsys

    assert all(world.object_rgb(c) == tuple(float(v) for v in rgb) for c, rgb in world.COLORS.items())
    assert np.allclose(world.object_rgb("teal", 360.0), world.COLORS["teal"], atol=1e-6)
    shifted = world.Domain(hue=35.0)
    for color in world.COLORS:
        h0 = colorsys.rgb_to_hls(*(v / 255 for v in world.COLORS[color]))[0]
        h1 = colorsys.rgb_to_hls(*(v / 255 for v in world.object_rgb(color, shifted.hue)))[0]
        assert abs((h1 - h0) % 1.0 - 35 / 360) < 1e-6, color
    plain, _ = world.render("red", "plain", "square", "center", np.random.default_rng(5))
    seen, _ = world.render("red", "plain", "square", "center", np.random.default_rng(5), domain=shifted)
    obj = (slice(13, 19), slice(13, 19))
    assert np.array_equal(plain[:4, :4], seen[:4, :4])  # background: untouched
    assert seen[obj][..., 1].mean() > plain[obj][..., 1].mean() + 60  # red turned towards orange
    # the data sets are seen through DOMAIN and say so; pretraining images never are
    ddir = world.write_dataset(str(tmp_path), "world_color", per_split=(1, 1, 1))
    with open(os.path.join(ddir, "world.json")) as f:
        recorded = json.load(f)["domain"]
    assert recorded == world.DOMAIN.changes() == {"hue": 35.0, "shape_blend": 0.4, "texture_blend": 0.5}
    # world_position has its own camera on top: the grid turned 45 degrees; a study's change applies to all alike
    pos = world.DATASETS["world_position"]
    assert pos.calibrated_domain().changes() == {**recorded, "position_rotation": 45.0}
    assert pos.calibrated_domain("position_rotation=0,hue=10") == world.Domain(hue=10.0, shape_blend=0.4,
                                                                                 texture_blend=0.5)
    assert world.DATASETS["world_color"].calibrated_domain("position_rotation=45") == world.Domain.parse(
        "position_rotation=45", base=world.DOMAIN)
    ddir = world.write_dataset(str(tmp_path), "world_position", per_split=(1, 1, 1))
    with open(os.path.join(ddir, "world.json")) as f:
        assert json.load(f)["domain"] == {**recorded, "position_rotation": 45.0}
    before = world.pretraining_set(3, seed=2)[0]
    monkeypatch.setattr(world, "DOMAIN", world.Domain(hue=90.0))
    assert np.array_equal(world.pretraining_set(3, seed=2)[0], before)


def test_domain_turns_shapes_lightens_marks_and_parses_with_clear_errors(tmp_path):
    def draw(shape, texture, domain, nuisance=world.NUISANCE):
        return world.render("blue", texture, shape, "center", np.random.default_rng(3), nuisance=nuisance,
                            domain=domain)[0]

    base = world.Domain()
    bg = np.array(world.BACKGROUNDS[world.render("blue", "plain", "bar", "center", np.random.default_rng(3))[1]])

    def lit(img):
        return np.abs(img.astype(int) - bg).sum(-1) > 120  # the object's pixels (same rng draws: same background)

    flat, turned = lit(draw("bar", "plain", base)), lit(draw("bar", "plain", world.Domain(shape_rotation=90.0)))
    assert np.ptp(np.nonzero(flat)[1]) > 2 * np.ptp(np.nonzero(flat)[0])  # a horizontal bar ...
    assert np.ptp(np.nonzero(turned)[0]) > 2 * np.ptp(np.nonzero(turned)[1])  # ... turned upright
    up, down = draw("triangle", "plain", base), draw("triangle", "plain", world.Domain(shape_rotation=180.0))
    rows_up, rows_down = lit(up).sum(1), lit(down).sum(1)
    top, bottom = slice(8, 16), slice(16, 24)
    assert rows_up[bottom].sum() > rows_up[top].sum()  # apex up: the wide part below the centre
    assert rows_down[top].sum() > rows_down[bottom].sum()  # upside down: the wide part above
    # light marks: same pattern, marks towards white instead of towards black; "plain" has no marks
    dark, light = draw("square", "striped", base), draw("square", "striped", world.Domain(light_marks=True))
    obj = (slice(12, 20), slice(12, 20))
    assert light[obj].astype(int).sum() > dark[obj].astype(int).sum() + 8 * 8 * 3 * 40
    assert np.array_equal(draw("square", "plain", base), draw("square", "plain", world.Domain(light_marks=True)))
    # texture rotation: horizontal stripes (the same along a row) become diagonal bands (the same along "/");
    # a plain object is unchanged
    def along(texture_rotation):  # how often neighbours agree, along a row / along the anti-diagonal
        img = world.render("yellow", "striped", "square", "center", np.random.default_rng(1),
                           domain=world.Domain(texture_rotation=texture_rotation))[0]
        m = img.astype(int).sum(-1)[11:21, 11:21]
        o = m > np.median(m)
        return (o[:, 1:] == o[:, :-1]).mean(), (o[1:, :-1] == o[:-1, 1:]).mean()

    (row0, anti0), (row45, anti45) = along(0), along(-45)
    assert row0 > 0.9 and anti45 > 0.9 and row45 < 0.75 and anti0 < 0.6
    assert np.array_equal(draw("square", "plain", base), draw("square", "plain", world.Domain(texture_rotation=45)))
    # blends: the image between the object's own shape (texture) and the next one's, linearly in the weight
    still = world.Nuisance(noise_std=0.0)

    def plain_draw(shape, texture, domain=base):
        return draw(shape, texture, domain, still).astype(float)

    for own, nxt, w in (("square", "triangle", 0.4), ("arrow", "circle", 0.7)):  # the next in SHAPES, cyclic
        mixed = plain_draw(own, "striped", world.Domain(shape_blend=w))
        assert np.abs(mixed - ((1 - w) * plain_draw(own, "striped") + w * plain_draw(nxt, "striped"))).max() <= 1
        assert len(np.unique(mixed.sum(-1))) > len(np.unique(plain_draw(own, "striped").sum(-1)))
    mixed = plain_draw("square", "striped", world.Domain(texture_blend=0.4))
    assert np.abs(mixed - (0.6 * plain_draw("square", "striped") + 0.4 * plain_draw("square", "zigzag"))).max() <= 1
    # position rotation: the grid turned clockwise about the image's centre; 0 draws the same bytes
    def centre_of(position, degrees):
        img = world.render("red", "plain", "circle", position, np.random.default_rng(2), nuisance=still,
                           domain=world.Domain(position_rotation=degrees))[0]
        ys, xs = np.nonzero(np.abs(img.astype(int) - img[0, 0].astype(int)).sum(-1) > 60)
        return ys.mean() / 32, xs.mean() / 32

    for position, degrees, lands in (("top center", 90, "center right"), ("center left", 90, "top center"),
                                     ("bottom right", 180, "top left"), ("center", 30, "center")):
        assert np.allclose(centre_of(position, degrees), centre_of(lands, 0), atol=0.08), (position, degrees)
    between = centre_of("top center", 22.5)  # half-way from the top cell towards the top right one, on its ring
    assert 0.5 < between[1] < 0.65 and between[0] < 0.35
    assert np.array_equal(draw("ring", "dotted", base), draw("ring", "dotted", world.Domain(position_rotation=0)))
    # parsing: named fields over a base, others kept; bad input names the key and the fix
    d = world.Domain.parse("shape_rotation=180, light_marks=1", base=world.Domain(hue=35.0))
    assert d == world.Domain(hue=35.0, shape_rotation=180.0, light_marks=True)
    assert world.Domain.parse("", base=world.DOMAIN) == world.DOMAIN
    for bad, says in (("shape_rotaton=3", "KEY one of hue, shape_rotation, light_marks, texture_rotation, shape_blend"),
                      ("hue", "not KEY=VALUE"), ("light_marks=yes", "light_marks wants 0 or 1"),
                      ("hue=nan", "hue wants a number"), ("shape_blend=1.5", "shape_blend is a weight between 0")):
        with pytest.raises(ValueError, match=says):
            world.Domain.parse(bad)
    r = subprocess.run([sys.executable, "-m", "tools.world", "--root", str(tmp_path), "--domain", "hue=red"],
                       cwd=ROOT, env=RUN_ENV, capture_output=True, text=True)
    assert r.returncode == 2 and "hue wants a number" in r.stderr and not list(tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "tools.world", "--root", str(tmp_path), "--datasets",
                        "world_position,world_colour"], cwd=ROOT, env=RUN_ENV, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown world_colour; known: world_color" in r.stderr
    assert not list(tmp_path.iterdir())
    # a data set made under another domain says so and is made again
    ddir = world.write_dataset(str(tmp_path), "world_shape", per_split=(1, 1, 1))
    first = _tree_digest(ddir)
    world.write_dataset(str(tmp_path), "world_shape", per_split=(1, 1, 1), domain=d)
    with open(os.path.join(ddir, "world.json")) as f:
        assert json.load(f)["domain"] == {"hue": 35.0, "shape_rotation": 180.0, "light_marks": True}
    assert _tree_digest(ddir) != first


def test_world_stamp_removes_results_made_under_another_world(tmp_path):
    w = tmp_path / "w"
    (w / "data" / "world_color").mkdir(parents=True)
    (w / "data" / "world_color" / "world.json").write_text('{"domain": {"hue": 35.0}}')
    (w / "tiny_world_clip.pt.json").write_text('{"sha256": "x", "seconds": 1}')

    def stamp(before=""):
        script = f". scripts/world_common.sh; {before} world_stamp"
        proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=dict(RUN_ENV, WORLD_DIR=str(w)),
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    (w / "base2new").mkdir()  # results from before stamps existed: not trusted
    assert "removing" in stamp() and not (w / "base2new").exists()
    (w / "base2new").mkdir()
    (w / "tiny_world_roles.json").write_text("{}")
    assert stamp() == "" and (w / "base2new").exists()  # same world: kept
    (w / "tiny_world_clip.pt.json").write_text('{"sha256": "x", "seconds": 2}')  # same CLIP, made again
    assert stamp() == "" and (w / "base2new").exists()
    assert "removing" in stamp('EXTRA_OPTS=x; OPTS="${OPTS} x";') and not (w / "base2new").exists()
    stamp()  # back to the plain options
    (w / "base2new").mkdir()
    (w / "data" / "world_color" / "world.json").write_text('{"domain": {"hue": 0.0}}')  # another world
    assert "removing" in stamp() and not (w / "base2new").exists() and not (w / "tiny_world_roles.json").exists()


def test_roles_are_rediscovered_when_their_inputs_change_and_results_of_old_roles_removed(tmp_path):
    """world_discover (scripts/world_common.sh), with discovery stubbed by a copy of a given roles file: it runs
    again only when the CLIP, corpus, seeds or options change, and removes DeAR's and the role-routed results only
    when the roles it then finds differ; a failed discovery leaves the old roles and results in place."""
    w = tmp_path / "w"
    w.mkdir()
    for name, text in [("tiny_world_clip.pt.json", '{"sha256": "x"}'), ("world_corpus.txt", "a red color\n"),
                       ("world_seeds.json", "{}")]:
        (w / name).write_text(text)
    a = json.loads(open(os.path.join(ROOT, "head_roles", "vit_b16.json")).read())
    b = json.loads(json.dumps(a))
    b["heads"][0]["role"], b["heads"][0]["concept"] = "mixed", "none"
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    (tmp_path / "a_again.json").write_text(json.dumps(dict(a, heads=[dict(h, phrases=["other words"])
                                                                  for h in a["heads"]])))
    results = ["base2new/train_base/world_mixed/shots_16/DeAR", "base2new/train_base/world_mixed/shots_16/CoOp",
               "xd/test/world_mixed_to_world_color/shots_16/DeAR", "roles/base2new"]

    def discover(source, fail=False):
        for r in results:
            (w / r).mkdir(parents=True, exist_ok=True)
        stub = (f'python() {{ if [ "$2" = head_roles.discover ]; then echo run >> {tmp_path}/calls; '
                + ('return 1; ' if fail else '')
                + f'local out=$(echo "$@" | sed "s/.*--out \\([^ ]*\\).*/\\1/"); cp {tmp_path}/{source} "$out"; '
                + 'cp "$out" "${out%.json}.png"; else command python "$@"; fi; }')
        proc = subprocess.run(["bash", "-c", f". scripts/world_common.sh; {stub}; world_discover"], cwd=ROOT,
                              env=dict(RUN_ENV, WORLD_DIR=str(w)), capture_output=True, text=True)
        calls = (tmp_path / "calls").read_text().count("run") if (tmp_path / "calls").exists() else 0
        (tmp_path / "calls").unlink(missing_ok=True)
        return proc, calls, [r for r in results if (w / r).exists()]

    proc, calls, kept = discover("a.json")
    assert proc.returncode == 0 and calls == 1 and kept == results  # no roles before: nothing to invalidate
    assert json.loads((w / "tiny_world_roles.json").read_text()) == a and (w / "tiny_world_roles.png").exists()
    assert discover("b.json")[1:] == (0, results)  # same inputs: not run again
    (w / "world_corpus.txt").write_text("a red color\nsomething red\n")
    proc, calls, kept = discover("a_again.json")  # run again; other phrases, the same roles: results kept
    assert calls == 1 and kept == results and "removing" not in proc.stdout
    (w / "world_seeds.json").write_text('{"color": ["a red color"]}')
    proc, calls, kept = discover("b.json", fail=True)
    assert proc.returncode != 0 and kept == results  # failed: old roles and results stay, next run retries
    assert json.loads((w / "tiny_world_roles.json").read_text())["heads"][0]["phrases"] == ["other words"]
    proc, calls, kept = discover("b.json")
    assert proc.returncode == 0 and calls == 1 and "the head roles changed" in proc.stdout
    assert kept == ["base2new/train_base/world_mixed/shots_16/CoOp"]  # DeAR's and the routed runs removed
    assert json.loads((w / "tiny_world_roles.json").read_text()) == b


# A shortened pretraining schedule and the digest of its weights under pinned numerics (tools/determinism.py),
# measured with the torch version below. Any x86-64 machine with AVX2 gives these bits.
SHORT = ["--steps", "3", "--batch", "32", "--images", "256", "--no-probe"]
# root: the chain's first stage (a plain run of the tool); chain: its last, the shipped recipe (--chain)
SHORT_DIGEST = {"torch": "2.14.1", "root": "204d8257db7af7ac", "chain": "0e302560fd1c86ea"}


def _pretrain(out, extra_env, *args):
    proc = subprocess.run([sys.executable, "-m", "tools.pretrain_world_clip", "--out", str(out), *SHORT, *args],
                          cwd=ROOT, env=dict(RUN_ENV, **extra_env), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(f"{out}.json") as f:
        return json.load(f)["sha256"]


def test_pretraining_is_bitwise_reproducible_under_any_thread_and_isa_settings(tmp_path):
    """Two runs of the shipped recipe (--chain: a root and three continuations) whose environments would pick
    other threads and kernels give the same bits at every stage: the numerics are pinned. Unpinned
    (DEAR_NUMERICS=native), those environments give other weights (the cause)."""
    from tools import pretrain_world_clip as tool

    machine_b = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "default",
                 "MKL_CBWR": "AUTO", "ONEDNN_MAX_CPU_ISA": "SSE41", "PYTHONHASHSEED": "7"}
    a = _pretrain(tmp_path / "a.pt", {}, "--chain")
    b = _pretrain(tmp_path / "b.pt", machine_b, "--chain")
    stages = [[json.loads(open(f"{p}.json").read()) for p in tool.chain_paths(str(tmp_path / f"{r}.pt"), 4)]
              for r in "ab"]
    assert [m["sha256"] for m in stages[0]] == [m["sha256"] for m in stages[1]] and a == b
    assert len({m["sha256"] for m in stages[0]}) == 4  # every stage trained
    # each stage continues the one before; the text tower is frozen in stages 2-3, slowed in stage 4
    for k, (prev, meta) in enumerate(zip(stages[0], stages[0][1:]), start=1):
        assert meta["settings"]["init"] == prev["sha256"]
        assert meta["settings"]["text_lr_mult"] == tool.SHIPPED_CHAIN[k]["text_lr_mult"]
    if torch.__version__.split("+")[0] == SHORT_DIGEST["torch"]:
        assert stages[0][0]["sha256"].startswith(SHORT_DIGEST["root"]), "pinned numerics: not the recorded bits"
        assert a.startswith(SHORT_DIGEST["chain"]), "pinned numerics: not the recorded bits"
    native_a = _pretrain(tmp_path / "na.pt", {"DEAR_NUMERICS": "native", "OMP_NUM_THREADS": "1"})
    native_b = _pretrain(tmp_path / "nb.pt", dict(machine_b, DEAR_NUMERICS="native"))
    assert native_a != native_b


def test_pretraining_can_start_from_a_world_clip_with_the_text_tower_frozen_or_slowed(tmp_path):
    """--init starts from a CLIP the tool made (checked by digest, recorded); --text-lr-mult 0 trains the image
    tower only; bad values are refused before anything is written."""
    from clipkit.loader import clip_state_dict, load_clip
    from tools import pretrain_world_clip as tool

    shipped = os.path.join(ROOT, tool.SHIPPED)
    out = tmp_path / "ft.pt"
    meta = tool.pretrain(str(out), steps=2, batch=16, n_images=64, probe=False, init=shipped, text_lr_mult=0.0,
                         hard=tool.parse_hard("color, color+position"))
    with open(shipped + ".json") as f:
        root = json.load(f)
    assert meta["settings"]["init"] == root["sha256"] and meta["settings"]["text_lr_mult"] == 0.0
    # the record names the chain, root first: a continuation of the continuation lists both ancestors
    assert meta["lineage"] == root.get("lineage", []) + [{"settings": root["settings"], "sha256": root["sha256"]}]
    again = tool.pretrain(str(tmp_path / "ft2.pt"), steps=1, batch=8, n_images=16, probe=False, init=str(out),
                          text_lr_mult=0.0)
    assert again["settings"]["init"] == meta["sha256"]
    assert again["lineage"] == meta["lineage"] + [{"settings": meta["settings"], "sha256": meta["sha256"]}]
    assert meta["settings"]["hard"] == "color,color+position"
    start, end = (clip_state_dict(load_clip("unused", str(p)).float()) for p in (shipped, out))
    text = [k for k in start if k.startswith(tool.TEXT_PARAMS)]
    assert len(text) > 20 and all(torch.equal(start[k], end[k]) for k in text)  # frozen, embedding rows kept
    assert not torch.equal(start["visual.conv1.weight"], end["visual.conv1.weight"])
    plain = tool.pretrain(str(tmp_path / "plain.pt"), steps=1, batch=8, n_images=16, probe=False)["settings"]
    assert not {"init", "text_lr_mult", "hard"} & set(plain)  # defaults: the settings as before the knobs
    assert "lineage" not in tool.pretrain(str(tmp_path / "plain.pt"), steps=1, batch=8, n_images=16, probe=False)
    # hard batches: every pool shares the group's values, and the pools cover every image once
    attrs = np.random.default_rng(0).integers(0, 3, size=(200, 4))
    pools = tool.hard_pools(attrs, ("color", "position"))
    assert sorted(torch.cat(pools).tolist()) == list(range(200))
    assert all(len({tuple(attrs[i][[0, 3]]) for i in p.tolist()}) == 1 for p in pools) and len(pools) == 9
    bad_init = dict(init=str(tmp_path / "no.pt"))
    for kw, says in ((dict(text_lr_mult=-1.0), "text_lr_mult must be"), (bad_init, "no such world CLIP"),
                     (dict(hard=tool.parse_hard("color+hue")), "each group names distinct attributes"),
                     (dict(hard=tool.parse_hard("color+color")), "each group names distinct attributes")):
        with pytest.raises((ValueError, FileNotFoundError), match=says):
            tool.pretrain(str(tmp_path / "bad.pt"), steps=1, batch=8, n_images=16, probe=False, **kw)
    with pytest.raises(ValueError, match="give --init or --chain, not both"):
        tool.pretrain_chain(str(tmp_path / "bad.pt"), init=shipped, steps=1, batch=8, n_images=16, probe=False)
    with pytest.raises(ValueError, match="the chain sets text_lr_mult per stage"):
        tool.pretrain_chain(str(tmp_path / "bad.pt"), text_lr_mult=0.5, steps=1, batch=8, n_images=16, probe=False)
    assert not (tmp_path / "bad.pt").exists()


def test_shipped_world_clip_is_what_the_tool_makes():
    """The shipped tiny CLIP: 8 heads per layer, its digest as recorded, made by the shipped recipe (--chain)
    with the tool's default settings."""
    from clipkit.determinism import state_digest
    from clipkit.loader import describe_backbone, load_clip
    from tools import pretrain_world_clip as tool

    path = os.path.join(ROOT, tool.SHIPPED)
    with open(path + ".json") as f:
        meta = json.load(f)
    assert os.path.getsize(path) < 8e6
    # the shipped recipe (SHIPPED_CHAIN) with the tool's defaults: its record names every stage, root first
    stages = meta["lineage"] + [{"settings": meta["settings"], "sha256": meta["sha256"]}]
    assert len(stages) == len(tool.SHIPPED_CHAIN)
    for k, (stage, recipe) in enumerate(zip(stages, tool.SHIPPED_CHAIN)):
        expected = dict(tool.default_settings(), **recipe, **({"init": stages[k - 1]["sha256"]} if k else {}))
        assert {key: v for key, v in stage["settings"].items() if key != "numerics"} == expected, k
        assert stage["settings"]["numerics"]["numerics"] == "pinned"
    model = load_clip("unused", path)
    info = describe_backbone(model)
    assert (info["layers"], info["heads"], info["width"]) == (6, 8, 128)
    from clipkit.loader import clip_state_dict

    assert state_digest(clip_state_dict(model)) == meta["sha256"]


class _StubDeAR:
    """What tools.figures.retrieval reads of a DeAR model: per-token image features and the queries' text."""

    def __init__(self, feats: torch.Tensor):
        self.learner = type("L", (), {"attributes": ("color", "location")})()
        self.feats = feats

    def image_features(self, images):
        return {"f_attr": self.feats}

    def set_classes(self, names, template):
        self.names = names

    def text_features(self):
        return torch.eye(2, 3)  # token k's query points along axis k


def test_retrieval_scores_hits_against_the_worlds_ground_truth():
    import matplotlib.pyplot as plt
    from figure_checks import overlapping_texts

    from tools.figures import RETRIEVAL_QUERIES, retrieval, retrieval_figure

    truth = [dict(color=c, position=p) for c, p in
             [("red", "top left"), ("blue", "top left"), ("red", "center"), ("green", "bottom left")]]
    # colour token: scores 4, 3, 2, 1 -> picks 0, 1 (red, blue); location token: picks 3, 1 (bottom left, top left)
    feats = torch.tensor([[[4.0, 0, 0], [0, 1, 0]], [[3, 0, 0], [0, 2, 0]], [[2, 0, 0], [0, 0, 0]],
                          [[1, 0, 0], [0, 3, 0]]])
    images = torch.zeros(4, 3, 8, 8)
    found = retrieval(_StubDeAR(feats), images, RETRIEVAL_QUERIES, top=2, truth=truth)
    assert found["color"] == {"picks": [0, 1], "hits": [True, False], "precision_at_k": 0.5, "chance": 0.5}
    assert found["location"] == {"picks": [3, 1], "hits": [False, True], "precision_at_k": 0.5, "chance": 0.5}
    fig = retrieval_figure(images, found, RETRIEVAL_QUERIES)
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles == ['color token: "something red"   P@2 = 0.50 (chance 0.50)',
                      'location token: "something in the top left"   P@2 = 0.50 (chance 0.50)']
    frames = [p.get_edgecolor() for ax in fig.axes for p in ax.patches]
    assert len(frames) == 4  # every pick framed: hit green, miss red
    assert overlapping_texts(fig) == []
    plt.close(fig)
    assert retrieval(_StubDeAR(feats), images, RETRIEVAL_QUERIES, top=2)["color"]["precision_at_k"] is None


def test_world_corpus_texts_have_one_concept_and_its_seeds_name_them():
    """Every corpus text describes one attribute (no "a red striped circle"); with the world's seeds SBERT + HDBSCAN
    name at least 90% of them as built and every location text a location, where the paper's seeds (places on
    earth) name none of the world's positions so."""
    from head_roles.corpus import CONCEPT_SEEDS
    from tools.concept_naming import naming_accuracy

    truth = world.world_corpus_concepts()
    assert world.world_corpus() == list(truth)
    assert set(truth.values()) == {"color", "texture", "shape", "location", "background"}
    values = {"color": set(world.COLORS), "texture": set(world.TEXTURES), "shape": set(world.SHAPES)}

    def attributes_named(text):
        return {a for a, vs in values.items() if vs & set(text.split())}

    assert attributes_named("a red striped circle") == {"color", "texture", "shape"}
    assert all(attributes_named(t) <= {c} for t, c in truth.items())
    seeds = world.world_concept_seeds()
    assert set(seeds) == set(CONCEPT_SEEDS) and seeds["color"] == CONCEPT_SEEDS["color"]
    assert seeds["location"] != CONCEPT_SEEDS["location"] and seeds["texture"] != CONCEPT_SEEDS["texture"]
    assert not set(truth) & set(world.WORLD_SEEDS["texture"] + world.WORLD_SEEDS["location"])
    ours, ours_per = naming_accuracy(truth, seeds, "leaf")  # background texts clustered, not scored
    papers, papers_per = naming_accuracy(truth, CONCEPT_SEEDS, "leaf")
    assert ours >= 0.9 and ours_per["location"] == 1.0
    assert papers_per["location"] == 0.0 and papers < ours - 0.15
    assert set(ours_per) == {"color", "texture", "shape", "location"}


def test_datasets_record_every_images_attributes(tmp_path):
    ddir = world.write_dataset(str(tmp_path), "world_texture", per_split=(1, 1, 1))
    attrs = json.loads((tmp_path / "world_texture" / world.ATTRIBUTES_FILE).read_text())
    split = json.loads((tmp_path / "world_texture" / world.DATASETS["world_texture"].split_file).read_text())
    items = [it for part in split.values() for it in part]
    assert sorted(attrs) == sorted(rel for rel, _, _ in items) and ddir.endswith("world_texture")
    for rel, _, cname in items:  # the defining attribute is the class; every attribute has a world value
        assert attrs[rel]["texture"] == cname and all(attrs[rel][a] in world.VALUES[a] for a in world.ATTRIBUTES)


@pytest.mark.parametrize("steps", ["3"])
def test_demo_chain_shortened(tmp_path, steps):
    """scripts/demo.sh end to end with tiny settings: world, pretraining, discovery, base2new, table, pictures."""
    env = dict(os.environ, SKIP_SETUP="1", WORLD_DIR=str(tmp_path / "world"), SEEDS="1", STEPS=steps,
               PRETRAIN_IMAGES="300", DISCOVER_IMAGES="48", EXTRA_OPTS="OPTIM.MAX_EPOCH 1", COOP_EPOCHS="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    out = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for method in ("DeAR (dear)", "ZeroshotCLIP (zsclip)", "CoOp (coop)"):
        assert f"| {method} | world_mixed |" in out.stdout, method
    for label in ("ZeroshotCLIP world_mixed     seed 1 base accuracy",
                  "CoOp         world_mixed     seed 1 new  accuracy",
                  "DeAR         world_mixed     seed 1 base accuracy"):
        assert label in out.stdout, label  # progress lines name method, seed and split
    for png in ("head_roles.png", "fusion_weights.png", "attribute_retrieval.png"):
        assert (tmp_path / "world" / "figures" / png).read_bytes()[:4] == b"\x89PNG"
    found = json.loads((tmp_path / "world" / "figures" / "attribute_retrieval.json").read_text())["retrieval"]
    for token, r in found.items():  # the world's ground truth scores every token's picks
        assert 0 <= r["precision_at_k"] <= 1 and 0 < r["chance"] < 1, token
        assert f"retrieval {token:9s} precision@8 {r['precision_at_k']:.2f}" in out.stdout
    assert (tmp_path / "world" / "tiny_world_roles.json").is_file()
    # the same world, one deep-prompt method without and with role routing (scripts/world_roles.sh)
    env.update(TRAINERS="MaPLe", DATASETS="world_mixed", SEEDS="1")
    out = subprocess.run(["bash", "scripts/world_roles.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "removing" not in out.stdout  # the demo's world: nothing made again
    assert "MaPLe        world_mixed     seed 1 new" in out.stdout
    for variant in ("none", "role"):
        assert f"roles world_mixed 1 {variant}" in out.stdout
    (row,) = [line for line in out.stdout.splitlines() if line.startswith("| MaPLe | world_mixed | 1 |")]
    cfg = (tmp_path / "world" / "roles" / "base2new" / "train_base" / "world_mixed" / "shots_16" / "MaPLe" / "maple"
           / "seed1" / "config.yaml").read_text()
    assert "MASK: role" in cfg and "tiny_world_roles.json" in cfg  # the routed run really routed
    assert row.count(" / ") == 4  # base / new / HM without and with roles
    # and the benchmark, cut down: two data sets, three methods, one seed, cross-dataset, the Figure-2 table
    env.update(TRAINERS="CoOp DeAR ZeroshotCLIP", DATASETS="world_mixed world_position", SEEDS="1")
    out = subprocess.run(["bash", "scripts/world_benchmark.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "removing" not in out.stdout and "(cached)" in out.stdout  # the demo's world_mixed runs are reused
    for method in ("CoOp", "DeAR", "ZeroshotCLIP"):
        assert f"| {method} | world_position | 1 |" in out.stdout, method
    for method in ("CoOp", "DeAR"):
        assert f"{method:12s} world_mixed     seed 1 -> world_position  accuracy" in out.stdout, method
        assert any(line.startswith(f"| {method}/") for line in out.stdout.splitlines()), method  # xd table row
    assert (tmp_path / "world" / "figures" / "fusion_by_dataset.png").read_bytes()[:4] == b"\x89PNG"


def test_linear_probe_reads_the_shipped_clip_and_refuses_a_folder_without_a_split(tmp_path, capsys):
    from tools.linear_probe import main, probe

    folder = world.write_dataset(str(tmp_path), "world_position", per_split=(8, 2, 4))
    r = probe(os.path.join(ROOT, "tools", "data", "tiny_world_clip.pt"), folder, shots=8, seed=1, cs=(1, 100))
    # position is what the shipped CLIP reads best (probe 100%): its features separate the 5 base cells
    assert (r["classes"], r["train_images"], r["test_images"]) == (5, 40, 20) and r["test"] >= 90
    assert probe(os.path.join(ROOT, "tools", "data", "tiny_world_clip.pt"), folder, 8, 1, (1, 100)) == r
    with pytest.raises(SystemExit, match="expected one split_zhou_"):
        main(["--clip", "x.pt", "--data", str(tmp_path)])


def test_world_depths_scale_each_official_depth_to_the_tiny_clip():
    import yaml

    from tools.world_depths import main, scaled_depth_opts

    def opts(name):
        with open(os.path.join(ROOT, "configs", f"{name}.yaml")) as f:
            return scaled_depth_opts(yaml.safe_load(f), vision_layers=6, text_layers=4)

    # share of 12 layers kept: 12 -> all, 9 -> ceil(0.75 L), a coupled depth by the smaller (text) tower
    assert opts("ivlp") == ["TRAINER.IVLP.PROMPT_DEPTH_TEXT", "4", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "6"]
    assert opts("maple") == ["TRAINER.MAPLE.PROMPT_DEPTH", "3"]
    assert opts("promptsrc") == ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "3",
                                 "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "5"]
    assert opts("mmrl") == ["TRAINER.MMRL.REP_LAYERS", "[2,3,4]"]
    assert opts("coop") == opts("dear") == opts("cocoop") == []
    with open(os.path.join(ROOT, "configs", "maple.yaml")) as f:
        assert scaled_depth_opts(yaml.safe_load(f), 12, 12) == ["TRAINER.MAPLE.PROMPT_DEPTH", "9"]  # ViT-B/16: as is
    assert main([]) == 2
