"""`pip install .` gives the product alone: the wheel holds chalicelib and cellkit (and the table template
as package data), never the simulator, the benches, the Stripe emulator or the tests; installed in a fresh
venv outside the checkout, `edge-billing` answers --help and finds its tables.

Fast on purpose (it runs in `make test`): the wheel is built without isolation from a copy of the
checkout (so nothing is written into it), and installed with --no-deps into a venv that reads its
dependencies from this venv's site-packages by a .pth line (which adds the folder, but runs none of its
.pth files: the editable install of the checkout stays out)."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

from chalicelib.adapters.dynamodb.tables import table_specs

ROOT = Path(__file__).resolve().parents[2]
NOT_SHIPPED = ("sim", "bench", "stripe_emulator", "tests", "infra")


def run(argv: list[str], cwd: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def test_the_wheel_ships_the_product_only_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    source = tmp_path / "source"
    tracked = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT).split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():  # (a file deleted in the work tree is still listed)
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
         str(tmp_path / "dist"), str(source)], tmp_path)
    [wheel] = (tmp_path / "dist").glob("edge_billing-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"chalicelib", "cellkit"}, tops
    assert not [n for n in names if n.split("/")[0] in NOT_SHIPPED]
    assert "chalicelib/adapters/dynamodb/template.json" in names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    [fresh_site] = (venv / "lib").glob("python3*/site-packages")
    (fresh_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps",
         "--no-index", str(wheel)], tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert "cutover" in run([str(venv / "bin" / "edge-billing"), "--help"], outside)
    assert "--lead" in run([str(venv / "bin" / "edge-billing"), "cutover", "plan", "--help"], outside)
    where = run([str(venv / "bin" / "python"), "-c", "import chalicelib, importlib.util as u; "
                 "from chalicelib.adapters.dynamodb.tables import table_specs; "
                 "print(chalicelib.__file__, len(table_specs('p')), "
                 "[m for m in ('sim', 'bench', 'stripe_emulator') if u.find_spec(m)])"], outside)
    path, tables, found = where.split(" ", 2)
    assert path.startswith(str(venv)) and int(tables) == len(table_specs("p")) and found.strip() == "[]", where
