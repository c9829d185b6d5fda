"""head_roles/vit_b16.json, its validation, and the role-based masks."""
import copy
import json

import pytest
import torch

from head_roles import (
    RolesFileError,
    RolesMismatch,
    ablate,
    load_roles,
    parse_roles,
    role_mask,
)


@pytest.fixture(scope="module")
def roles():
    return load_roles("ViT-B/16")


@pytest.fixture
def doc():
    from head_roles.roles import default_roles_path

    with open(default_roles_path("ViT-B/16")) as f:
        return json.load(f)


def test_vit_b16_matches_table_2(roles):
    assert roles.layers == (9, 10, 11, 12) and roles.num_heads == 12 and roles.width == 768
    assert roles.core_attributes == ("color", "shape", "texture", "object", "location")
    assert len(roles.heads) == 48
    assert roles.role_counts() == {"attribute": 28, "other_specialized": 8, "generalization": 7, "mixed": 5}
    assert roles.attribute_counts() == {"location": 13, "object": 6, "texture": 4, "color": 3, "shape": 2}
    assert roles.heads_with_role(9, "generalization") == [5, 10]
    assert roles.heads_with_role(12, "mixed") == [3, 8]
    assert roles.heads_for_attribute(10, "color") == [1]
    assert roles.heads_for_attribute(11, "texture") == [4, 5]
    assert roles.isolated_heads(12) == [1, 2, 4, 9, 11]
    assert roles.get(12, 9).concept == "number"
    assert roles.get(9, 0).phrases[0].startswith("Photo taken in Gal")


def test_digest_ignores_phrases_but_not_roles(roles, doc):
    d2 = copy.deepcopy(doc)
    d2["heads"][0]["phrases"] = ["changed"]
    assert parse_roles(d2).digest == roles.digest
    d2["heads"][2]["role"], d2["heads"][2]["concept"] = "generalization", "style"
    assert parse_roles(d2).digest != roles.digest


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["heads"].pop(5), r"heads have no role, e.g. layer 9 head 5"),
    (lambda d: d["heads"].append(dict(d["heads"][0])), r"duplicate of heads\[0\]"),
    (lambda d: d["heads"][3].update(head=12), r"head must be in 0..11"),
    (lambda d: d["heads"][3].update(layer=8), r"layer must be one of"),
    (lambda d: d["heads"][3].update(role="expert"), r"role 'expert' is not one of"),
    (lambda d: d["heads"][3].update(concept="smell"), r"concept 'smell'"),
    (lambda d: d["heads"][4].update(role="attribute"), r"must name a core attribute .* 'emotion'"),
    (lambda d: d.pop("num_heads"), r"missing top-level key 'num_heads'"),
    (lambda d: d.update(layers=[9, 10, 11, 13]), r"'layers' must list distinct layers in 1..12"),
    (lambda d: d.update(core_attributes=["color", "smell"]), r"core_attributes"),
])
def test_malformed_files_name_entry_and_fix(doc, mutate, match):
    mutate(doc)
    with pytest.raises(RolesFileError, match=match):
        parse_roles(doc, source="bad.json")


def test_invalid_json_and_missing_file(tmp_path):
    p = tmp_path / "r.json"
    p.write_text('{"backbone": "ViT-B/16",,}')
    with pytest.raises(RolesFileError, match="not valid JSON"):
        load_roles(str(p))
    with pytest.raises(FileNotFoundError, match="head_roles.discover"):
        load_roles("ViT-H/99")


def test_backbone_mismatch(roles):
    roles.check_backbone(12, 12, 768)
    with pytest.raises(RolesMismatch, match=r"\(12, 12, 768\).*\(6, 2, 128\)"):
        roles.check_backbone(6, 2, 128)


def test_mask_rules(roles):
    n_orig, k = 5, 5
    m = role_mask(roles.layer(10), roles.core_attributes, n_orig)
    assert m.shape == (12, 10, 10)
    blocked = torch.isinf(m)
    orig = slice(0, n_orig)
    color_tok = n_orig + roles.core_attributes.index("color")
    # generalization head 7: no exchange either way, originals untouched
    assert blocked[7, orig, n_orig:].all() and blocked[7, n_orig:, orig].all()
    assert not blocked[7, orig, orig].any()
    # colour head 1: only the colour token talks to the originals
    assert not blocked[1, orig, color_tok].any() and not blocked[1, color_tok, orig].any()
    others = [t for t in range(n_orig, n_orig + k) if t != color_tok]
    assert blocked[1][others][:, orig].all() and blocked[1][orig][:, others].all()
    # every row keeps a finite entry; attribute tokens see themselves
    assert (~blocked).any(-1).all()
    assert not blocked[:, range(n_orig, n_orig + k), range(n_orig, n_orig + k)].any()
    # attribute tokens do not see each other by default, do with "all"
    assert blocked[7, n_orig, n_orig + 1]
    assert not torch.isinf(role_mask(roles.layer(10), roles.core_attributes, n_orig, "all"))[7, n_orig:, n_orig:].any()
    # mixed heads fully open
    m12 = role_mask(roles.layer(12), roles.core_attributes, n_orig)
    assert not torch.isinf(m12[3]).any() and not torch.isinf(m12[8]).any()


def test_ablations(roles):
    none = role_mask(ablate(roles, "none").layer(9), roles.core_attributes, 3)
    assert not torch.isinf(none).any()
    gen = ablate(roles, "generalization_only")
    assert [h.head for h in gen.layer(9) if h.isolated] == [5, 10]
    iso = role_mask(ablate(roles, "isolate_all").layer(9), roles.core_attributes, 3)
    assert torch.isinf(iso[:, :3, 3:]).all()
    s1, s2 = ablate(roles, "random_shuffle", seed=1), ablate(roles, "random_shuffle", seed=1)
    assert s1.assignment() == s2.assignment() and s1.assignment() != roles.assignment()
    assert s1.role_counts() == roles.role_counts()  # a permutation keeps the counts
    with pytest.raises(ValueError, match="isolate_all"):
        ablate(roles, "everything")


def test_roles_file_messages_name_the_file(tmp_path):
    import json

    import pytest

    from head_roles import RolesFileError, load_roles

    with pytest.raises(FileNotFoundError, match=r"Head-roles file out/world/roles\.json does not exist"):
        load_roles("out/world/roles.json")  # a path: named as given, no mangled default
    with pytest.raises(FileNotFoundError, match=r"No head-roles file ships for backbone 'ViT-L/14'.*shipped: vit_b16"):
        load_roles("ViT-L/14")
    doc = json.loads(open(load_roles("ViT-B/16").source).read())
    doc["heads"][0]["head"] = True  # JSON true is not head 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(RolesFileError, match=r"heads\[0\] .*head must be in 0\.\.11"):
        load_roles(str(bad))
