"""The layers of atlas/: imports only point down (read from the source with `ast`, imports inside functions
included), no module imports another in a cycle, each stage's DVC deps cover the code it runs, and the modules that
every test imports stay free of heavy packages. The checker itself is tested on small fixture packages: it must fail
when a cycle, an upward import or a sideways import is planted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.import_graph import (
    ATLAS_LAYERS,
    closure,
    cycles,
    import_graph,
    layer_violations,
    unit_of,
)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(REPO, ["atlas", "flows"])


def test_every_module_belongs_to_a_layer_and_imports_only_point_down(graph):
    assert len(graph) > 60
    violations = layer_violations(graph, ATLAS_LAYERS, "atlas")
    assert not violations, "\n".join(map(str, violations))


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_cli_imports_the_doctor_and_inference_never_imports_training(graph):
    assert "atlas.ops.doctor" in closure(graph, "atlas.cli.main")
    assert not any(m.startswith("atlas.cli") for m in closure(graph, "atlas.ops.doctor"))
    assert not any(m.startswith("atlas.training") for m in closure(graph, "atlas.llm.student"))


# -- the checker on fixture packages -----------------------------------------------------------------------------

FIXTURE_LAYERS = (("pkg.core",), ("pkg.llm",), ("pkg.data", "pkg.rim"), ("pkg.cli",))


def _package(root: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for name, text in {"pkg/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return import_graph(root, ["pkg"])


CLEAN = {
    "pkg/core/__init__.py": "",
    "pkg/core/io.py": "import json\n",
    "pkg/llm/__init__.py": "",
    "pkg/llm/client.py": "from pkg.core import io\n",
    "pkg/llm/gen.py": "from .client import *\n",
    "pkg/data/__init__.py": "",
    "pkg/data/load.py": "from pkg.llm.client import x\n",
    "pkg/rim/__init__.py": "",
    "pkg/rim/judge.py": "import pkg.core.io\n",
    "pkg/cli/__init__.py": "",
    "pkg/cli/main.py": "from pkg.data import load\nfrom pkg.rim import judge\n",
}


def test_checker_passes_a_clean_fixture(tmp_path):
    graph = _package(tmp_path, CLEAN)
    assert graph["pkg.llm.gen"] == {"pkg.llm.client"}  # relative imports resolve
    assert graph["pkg.cli.main"] == {"pkg.data.load", "pkg.rim.judge"}
    assert layer_violations(graph, FIXTURE_LAYERS, "pkg") == [] and cycles(graph) == []


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        # an upward import at module level
        ({"pkg/core/io.py": "from pkg.llm import client\n"}, "pkg.core.io imports pkg.llm.client: pkg.core (rank 0)"),
        # the same, hidden inside a function
        ({"pkg/llm/client.py": "def f():\n    from pkg.cli.main import run\n"}, "pkg.llm.client imports pkg.cli.main"),
        # under TYPE_CHECKING
        ({"pkg/core/io.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.rim.judge\n"},
         "pkg.core.io imports pkg.rim.judge"),
        # sideways between two packages of one rank
        ({"pkg/data/load.py": "from pkg.rim.judge import J\n"}, "pkg.data and pkg.rim are on the same rank"),
        # a module no layer owns
        ({"pkg/stray.py": "import pkg.core.io\n"}, "pkg.stray imports -: the module belongs to no layer"),
        # the root package reaching into the layers
        ({"pkg/__init__.py": "from pkg.cli.main import main\n"}, "the root package imports nothing"),
    ],
)  # fmt: skip
def test_checker_fails_on_an_upward_sideways_or_stray_import(tmp_path, planted, expected):
    graph = _package(tmp_path, {**CLEAN, **planted})
    violations = [str(v) for v in layer_violations(graph, FIXTURE_LAYERS, "pkg")]
    assert any(expected in v for v in violations), violations


@pytest.mark.parametrize(
    "planted",
    [
        {"pkg/llm/client.py": "from pkg.llm.gen import g\n"},  # a two-module cycle inside one layer
        {"pkg/llm/client.py": "def later():\n    from . import gen\n"},  # the same cycle, through a function
        {"pkg/llm/__init__.py": "from pkg.llm.gen import g\n", "pkg/llm/client.py": "from pkg.llm import y\n"},
    ],
)
def test_checker_fails_on_a_cycle(tmp_path, planted):
    graph = _package(tmp_path, {**CLEAN, **planted})
    found = cycles(graph)
    assert found and {"pkg.llm.client", "pkg.llm.gen"} <= {m for c in found for m in c}


# -- DVC deps follow the layers ------------------------------------------------------------------------------------


def _dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_dvc_yaml_defines_exactly_the_stages_in_pipeline_order():
    from atlas.stages import STAGES

    assert tuple(_dvc_stages()) == STAGES
    for name, stage in _dvc_stages().items():
        assert stage["cmd"].split()[:2] == ["atlas", name]


def _files_of(module: str) -> set[str]:
    """The file of a module and the package `__init__` files Python runs before it (the root package's excluded:
    it holds only the version and imports nothing, see above)."""
    parts = module.split(".")
    path = "/".join(parts)
    files = {f"{path}/__init__.py" if (REPO / path).is_dir() else f"{path}.py"}
    files |= {"/".join(parts[:i]) + "/__init__.py" for i in range(2, len(parts))}
    return files


def _covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


def runtime_closure(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that runs when `start` is imported: its imports, and the `__init__` of every package on the way
    (importing `atlas.rim.config` runs `atlas/rim/__init__.py` and whatever that imports)."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(graph.get(module, ()))
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in graph)
    return seen


@pytest.mark.parametrize("stage", list(_dvc_stages()))
def test_each_stage_depends_on_every_file_it_imports(graph, stage):
    deps = [d for d in _dvc_stages()[stage]["deps"] if d.startswith("atlas")]
    needed = {f for module in runtime_closure(graph, f"atlas.stages.{stage}") - {"atlas"} for f in _files_of(module)}
    missing = sorted(f for f in needed if not _covered(f, deps))
    assert not missing, f"dvc.yaml stage '{stage}' misses deps on {missing}"
    # and the deps name layers the stage really uses (no stale paths)
    for dep in deps:
        assert (REPO / dep).exists(), dep
        assert any(_covered(f, [dep]) for f in needed), f"stage '{stage}' depends on {dep} but imports nothing there"


def test_layer_units_are_the_folders_of_atlas():
    units = {u for rank in ATLAS_LAYERS for u in rank if u.startswith("atlas.")}
    on_disk = {f"atlas.{p.stem}" for p in (REPO / "atlas").iterdir() if p.name != "__init__.py" and p.suffix == ".py"}
    on_disk |= {f"atlas.{p.name}" for p in (REPO / "atlas").iterdir() if (p / "__init__.py").exists()}
    assert units == on_disk
    assert unit_of("atlas.rim.backends.remote", ATLAS_LAYERS) == (4, "atlas.rim")


def test_the_readme_tree_names_every_module():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    tree = readme[readme.index("## Where things are") : readme.index("## Results")]
    stems = {p.parent.name if p.stem == "__init__" else p.stem for p in (REPO / "atlas").rglob("*.py")} - {"__main__"}
    assert sorted(s for s in stems if s not in tree) == []


# -- what every test imports stays light ---------------------------------------------------------------------------


def test_often_imported_modules_import_no_heavy_package():
    code = (
        "import sys\n"
        "import atlas.config, atlas.teaching.rewards, atlas.teaching.answers, atlas.teaching.protocol, atlas.rim\n"
        "import atlas.stages, atlas.cli.main\n"
        "heavy = [m for m in ('torch', 'trl', 'transformers', 'great_expectations', 'mlflow', 'prefect', 'scipy')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=REPO)


# -- each concept in one place -------------------------------------------------------------------------------------

ONE_HOME = [
    # (what, a regex that only its home may contain, its home)
    ("atomic writes", r"os\.replace\(|tempfile\.mkstemp", "atlas/core/io.py"),
    ("the stage list", r"^STAGES = ", "atlas/stages/__init__.py"),
    ("teacher -> checkpoint", r"TEACHER_CHECKPOINTS = |GRPO_CHECKPOINT if", "atlas/core/paths.py"),
    ("the <teaching> extraction", r"<teaching>\(", "atlas/teaching/protocol.py"),
    ("the RIM trajectory fields", r'"student_probe": \[', "atlas/rim/rows.py"),
    ("key checking and overrides", r"def (check_keys|apply_overrides|parse_override|format_validation_error)\(",
     "atlas/core/settings.py"),
    ("the retry policy", r"import tenacity|def parse_retry_after|RETRYABLE_STATUS = ", "atlas/llm/transport.py"),
    ("HTTP requests to models", r"httpx\.(Async)?Client\(", "atlas/llm/openai_client.py"),
    ("local generation", r"\.generate\(\s*input_ids=|model\.generate\(", "atlas/llm/generation.py"),
    ("loading model weights", r"AutoModelForCausalLM\.from_pretrained\(", "atlas/llm/models.py"),
    ("the TRL private patch", r"_use_triton", "atlas/training/trl_compat.py"),
    ("the bootstrap", r"bootstrap\(|rng\.integers", "atlas/teaching/metrics.py"),
    ("outcome rates", r'"improvement_rate": sum\(|\(1 - p\) \* q', "atlas/teaching/rewards.py"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "pattern", "home"), ONE_HOME, ids=[w for w, _, _ in ONE_HOME])
def test_each_concept_lives_in_one_module(what, pattern, home):
    import re

    regex = re.compile(pattern, re.MULTILINE)
    found = sorted(
        str(path.relative_to(REPO))
        for package in ("atlas", "flows")
        for path in (REPO / package).rglob("*.py")
        if regex.search(path.read_text(encoding="utf-8"))
    )
    assert found == [home], f"{what}: {found}"


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_the_rim_config_file_of_each_preset_is_a_dvc_dependency(preset):
    """Issue 13 item 9: the paper preset's `configs/rim_gemini.yaml` was no dependency of any stage, so editing it
    re-ran nothing. The file `rim.config_path` names must be a dep of the `config` stage, whose `rim.json` (holding
    the resolved judge configuration) every stage that calls the judges depends on."""
    from atlas.config import load_config

    stages = _dvc_stages()
    path = str(load_config(None, preset=preset, presets_dir=REPO / "configs/presets").rim.config_path)
    via_config = _covered(path, [str(d) for d in stages["config"]["deps"]])
    for stage in ("grpo", "evaluate"):
        deps = [str(d) for d in stages[stage]["deps"]]
        assert _covered(path, deps) or (via_config and "data/config/rim.json" in deps), f"{stage} misses {path}"
