"""Configuration: presets, params.yaml, overrides, and the errors that say how to fix a bad one."""

from __future__ import annotations

import pytest

from atlas.cli import main
from atlas.config import ConfigError, load_config, parse_override, write_sections
from atlas.core.errors import AtlasError


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_every_preset_loads(project, preset):
    cfg = load_config(preset=preset)
    assert cfg.preset == preset
    assert cfg.grpo.per_device_train_batch_size % cfg.grpo.num_generations == 0


def test_layers_preset_then_params_then_overrides(project):
    (project / "params.yaml").write_text("preset: tiny\ngrpo:\n  max_steps: 7\n  beta: 0.1\n")
    cfg = load_config(overrides=["grpo.beta=0.2", "protocol.few_shot=false"])
    assert (cfg.grpo.max_steps, cfg.grpo.beta, cfg.protocol.few_shot) == (7, 0.2, False)
    assert cfg.grpo.num_generations == 4  # untouched preset value
    assert load_config(overrides=["preset=cpu"]).models.student.source == "smollm2"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sft.max_step=3"], r"unknown config key 'sft.max_step' \(valid keys here: .*max_steps"),
        (["grpo.beta=abc"], r"config key 'grpo.beta': .*number.*'abc'"),
        (["grpo.loss_type=ppo"], r"config key 'grpo.loss_type': must be one of 'grpo', 'dapo'"),
        (["models.device=tpu"], r"'models.device': must be one of 'cpu', 'cuda' or 'auto' \(got 'tpu'\)"),
        (["data.eval_fraction=1.5"], r"'data.eval_fraction': .*less than 1"),
        (["grpo.num_generations=3"], r"must be divisible by num_generations \(3\)"),
        (["preset=gpu"], r"unknown preset 'gpu' \(valid presets: cpu, paper, tiny"),
        (["nonsense"], r"must look like key.path=value"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(project, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_unknown_key_in_params_file_names_the_file(project):
    (project / "params.yaml").write_text("preset: tiny\nsft:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"params.yaml: unknown config key 'sft.epochs'"):
        load_config()


def test_cli_prints_one_error_line_and_exits_2(project, capsys):
    assert main(["config", "--set", "sft.max_step=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "sft.max_step" in err[0]


@pytest.mark.parametrize(
    ("item", "expected"),
    [("a.b=3", (["a", "b"], 3)), ("a=[1, 2]", (["a"], [1, 2])), ("a=null", (["a"], None)), ("a=x=y", (["a"], "x=y"))],
)
def test_parse_override(item, expected):
    assert parse_override(item) == expected


def test_sections_change_only_where_the_config_changed(project, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_sections(load_config(), a)
    write_sections(load_config(overrides=["grpo.max_steps=9"]), b)
    changed = {p.name for p in a.iterdir() if p.read_text() != (b / p.name).read_text()}
    assert changed == {"grpo.json"}


# -- issue 13 item 10: an override takes effect or says where it belongs -------------------------------------------


def test_a_stage_refuses_an_override_its_inputs_were_not_made_with(project, capsys):
    from atlas.cli import main
    from atlas.ops.runner import check_upstream_config

    assert main(["config"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--set", "data.max_eval=5"]) == 2  # tiny's held-out split was made with max_eval 8
    err = capsys.readouterr().err
    assert "error: data.max_eval=5: the outputs of ingest, validate that `atlas evaluate` reads were made with 8" in err
    assert "set it in params.yaml and run `dvc repro`" in err
    check_upstream_config(load_config(overrides=["evaluation.k=3"]), "evaluate")  # its own section: a one-off run
    with pytest.raises(AtlasError, match="protocol.student_max_tokens=5"):
        check_upstream_config(load_config(overrides=["protocol.student_max_tokens=5"]), "evaluate")


def test_atlas_run_refuses_another_params_file(project, capsys):
    from atlas.cli import main

    (project / "other.yaml").write_text("preset: tiny\n")
    assert main(["run", "--params", "other.yaml"]) == 2
    assert "a pipeline run reads params.yaml (what DVC sees), not other.yaml" in capsys.readouterr().err
