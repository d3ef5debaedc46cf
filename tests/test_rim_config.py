"""RIM config: the shipped files load, defaults match the embedded config, bad keys/values fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.config import ConfigError
from atlas.rim import JudgeSpec
from atlas.rim.config import RIMConfig, load_rim_config
from atlas.rim.judges import get_judge

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "configs" / "rim_config.yaml"
GEMINI = ROOT / "configs" / "rim_gemini.yaml"


def test_shipped_configs_load():
    default = load_rim_config(DEFAULT)
    assert default == RIMConfig()  # the file and the built-in defaults agree
    assert default.small_model.provider == default.large_model.provider == "offline"
    assert default.temperatures == [0.2, 0.5, 0.8]
    assert default.enabled_judges() == ["accuracy", "helpfulness", "process", "diagnostic"]
    gemini = load_rim_config(GEMINI)
    assert (gemini.small_model.provider, gemini.small_model.model) == ("gemini", "gemini-2.5-flash")
    assert (gemini.large_model.provider, gemini.large_model.model) == ("gemini", "gemini-2.5-pro")
    assert gemini.small_model.api_key_env == gemini.large_model.api_key_env == "GEMINI_API_KEY"
    assert gemini.small_model.input_price_per_million > 0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"variance_threshold": 0.1}, ("variance_threshold", 0.1)),
        (["rim.uncertainty_threshold=0.5"], ("uncertainty_threshold", 0.5)),
        (["small_model.provider=google"], ("small_model.provider", "gemini")),  # the seed's spelling
        (["temperatures=[0.3, 0.7]"], ("temperatures", [0.3, 0.7])),
        ({"active_judges.diagnostic": False}, ("active_judges.diagnostic", False)),
    ],
)
def test_overrides(overrides, expected):
    cfg = load_rim_config(DEFAULT, overrides)
    value = cfg
    for part in expected[0].split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    assert value == expected[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"temperaturez": [0.1]}, "unknown RIM config key 'temperaturez' (valid keys here: active_judges"),
        ({"small_model.retry.attemptz": 2}, "unknown RIM config key 'small_model.retry.attemptz'"),
        ({"small_model.provider": "claude"}, "'small_model.provider': must be one of 'gemini', 'openai'"),
        ({"variance_threshold": -0.1}, "'variance_threshold': Input should be greater than or equal to 0"),
        ({"uncertainty_threshold": 1.5}, "'uncertainty_threshold'"),
        ({"temperatures": []}, "'temperatures'"),
        ({"temperatures": [0.2, 3.0]}, "each temperature must be in [0, 2]"),
        ({"active_judges.creativity": True}, "unknown judge(s) ['creativity'] (valid judges: accuracy, diagnostic"),
        ({"active_judges.session": True}, "unknown judge(s) ['session']"),
        ({"active_judges": {"accuracy": False}}, "no judge is enabled"),
        ({"aggregation.judge_weights": {"nope": 1.0}}, "judge_weights names judge(s) ['nope']"),
        ({"aggregation.judge_weights": {"accuracy": -1.0}}, "weights must be >= 0"),
        ({"aggregation.tier1_selection": "median"}, "must be one of 'most_confident' or 'mean'"),
        ({"max_concurrency": 0}, "'max_concurrency'"),
        ({"custom_judges": {"accuracy": {"role": "r", "task": "t"}}}, "built-in judge or a reserved name"),
        ({"custom_judges": {"c": {"role": "r", "task": "t", "fields": ["bogus"]}}}, "unknown field(s) ['bogus']"),
    ],
)
def test_invalid_config_names_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_rim_config(DEFAULT, overrides)
    assert message in str(err.value)
    assert str(DEFAULT) in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="RIM config file not found"):
        load_rim_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rim: [1, 2]\n")
    with pytest.raises(ConfigError, match="'rim' must be a mapping"):
        load_rim_config(bad)
    extra = tmp_path / "extra.yaml"
    extra.write_text("rim: {}\nother: 1\n")
    with pytest.raises(ConfigError, match="unexpected top-level key"):
        load_rim_config(extra)


def test_bare_mapping_and_default_path(tmp_path, monkeypatch):
    bare = tmp_path / "bare.yaml"
    bare.write_text("variance_threshold: 0.2\n")
    assert load_rim_config(bare).variance_threshold == 0.2
    monkeypatch.chdir(tmp_path)  # no configs/rim_config.yaml here: built-in defaults
    assert load_rim_config(None) == RIMConfig()


def test_user_judges_from_config_and_from_code():
    cfg = load_rim_config(
        DEFAULT,
        {
            "custom_judges": {"brevity": {"role": "the brevity judge", "task": "Is the guidance short?"}},
            "active_judges.brevity": True,
        },
    )
    assert "brevity" in cfg.enabled_judges()
    assert get_judge("brevity", cfg).task == "Is the guidance short?"

    with pytest.raises(ConfigError, match="creativity"):
        load_rim_config(DEFAULT, {"active_judges.creativity": True})
    creativity = JudgeSpec("creativity", "the creativity judge", "Score originality.", (), ("teaching",))
    cfg = load_rim_config(DEFAULT, {"active_judges.creativity": True}, judges=[creativity])
    assert cfg.enabled_judges()[-1] == "creativity"
    assert get_judge("creativity", cfg) == creativity
    with pytest.raises(ConfigError, match="defined twice"):
        load_rim_config(DEFAULT, judges=[creativity, JudgeSpec("creativity", "r", "t", (), ("teaching",))])
    with pytest.raises(ConfigError, match="built-in judge"):
        load_rim_config(DEFAULT, judges=[JudgeSpec("accuracy", "r", "t", (), ("teaching",))])
    # a judge defined in code belongs to that config only: nothing leaks into the next load
    with pytest.raises(ConfigError, match="creativity"):
        load_rim_config(DEFAULT, {"active_judges.creativity": True})


def test_reward_construction_forms():
    from atlas.rim import RIMReward

    by_path = RIMReward(config_path=str(DEFAULT))  # the seed's spelling
    assert by_path.config == RIMConfig() and by_path.__name__ == "rim"
    assert RIMReward(str(GEMINI)).config.small_model.provider == "gemini"
    tuned = RIMReward(RIMConfig(), overrides={"variance_threshold": 0.1, "small_model.model": "rules-v2"})
    assert tuned.config.variance_threshold == 0.1 and tuned.config.small_model.model == "rules-v2"
    with pytest.raises(ConfigError, match="variance_threshold"):
        RIMReward(RIMConfig(), overrides=["variance_threshold=-1"])
