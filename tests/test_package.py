"""The installable package: metadata, contents, import from another folder, no import-time side effects."""
import subprocess
import sys
import zipfile


def test_wheel_installs_and_imports_from_another_folder(tmp_path, built_wheel):
    wheel = built_wheel
    names = zipfile.ZipFile(wheel).namelist()
    assert "head_roles/vit_b16.json" in names and "clipkit/surgery.py" in names and "dasslite/__init__.py" in names
    assert not any(n.startswith(("trainers/", "tests/", "datasets/")) for n in names)  # no name clashes with a
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()  # CoOp repo
    assert "Name: dear-prompt-learning" in metadata and "Requires-Dist: openai-clip" in metadata
    target = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    probe = (
        "import sys, io, contextlib\n"
        "before = list(sys.meta_path)\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    import clipkit, head_roles, dasslite\n"
        "assert sys.meta_path == before, 'an import changed sys.meta_path'\n"
        "assert 'dassl' not in sys.modules, 'an import aliased dassl'\n"
        "assert out.getvalue() == '', out.getvalue()\n"
        "assert head_roles.__file__.startswith(sys.argv[1]), head_roles.__file__\n"
        "roles = head_roles.load_roles('ViT-B/16')\n"
        "masks = head_roles.role_masks(roles, [10], 197, [None, None], 12, attr_interaction='all')\n"
        "print(roles.role_counts()['attribute'], tuple(masks[0].shape))\n"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "CLIP_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", probe, str(target)], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["28", "(12,", "199,", "199)"]
