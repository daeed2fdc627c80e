"""End to end: `paribus run` on the demo config writes the run folder of the contract and finds the planted truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from causal import EFFECT_COLUMNS, MEDIATION_COLUMNS
from experiments import compile_config, load_experiment
from experiments.config._schema import MediationConfig
from experiments.run._store import config_hash
from interventions import ModelAdapter, ModelSpec

pytestmark = pytest.mark.slow

UNITS = 80


def paribus(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("paribus")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run_folder(example: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "demo"
    done = paribus("run", str(example), "--units", str(UNITS), "--seed", "3", "--out", str(folder))
    assert done.returncode == 0, done.stderr
    assert f"run folder: {folder}" in done.stdout
    return folder


def test_run_folder_holds_every_file_of_the_contract(run_folder: Path) -> None:
    names = {path.name for path in run_folder.iterdir()}
    assert names == {
        "config.yaml",
        "manifest.json",
        "units.parquet",
        "outcomes.parquet",
        "effects.csv",
        "summary.md",
        "mediation.parquet",
        "mediation_0_insurance.png",
        "evidence.parquet",
        "evidence_links.csv",
        "evidence_agreement.csv",
        "probes.csv",
        "token_view.parquet",
        "token_view.html",
        "hypotheses.csv",
        "fairness.csv",
        "surrogate.csv",
        "surrogate_coefficients.csv",
        "surrogate_rules.txt",
        "report.html",
    }
    assert tuple(pd.read_csv(run_folder / "effects.csv").columns) == EFFECT_COLUMNS
    assert tuple(pd.read_parquet(run_folder / "mediation.parquet").columns) == MEDIATION_COLUMNS


def test_tables_hold_every_unit_in_every_arm(run_folder: Path, example: Path) -> None:
    arms = load_experiment(example).arms
    units = pd.read_parquet(run_folder / "units.parquet")
    outcomes = pd.read_parquet(run_folder / "outcomes.parquet")
    assert units["unit_id"].tolist() == list(range(UNITS))
    assert units["weight"].sum() == pytest.approx(1.0)
    assert len(outcomes) == UNITS * len(arms)
    assert set(outcomes["arm"]) == {arm.label for arm in arms}
    assert not outcomes.duplicated(["unit_id", "arm"]).any()
    factual = outcomes[outcomes["arm"] == "factual"].set_index("unit_id")
    for row in units.itertuples():
        assert row.insurance__form in factual.loc[row.unit_id, "text"]


def test_manifest_reproduces_the_run(run_folder: Path, demo_model_path: Path) -> None:
    manifest = json.loads((run_folder / "manifest.json").read_text())
    resolved = load_experiment(run_folder / "config.yaml")
    assert manifest["status"] == "complete"
    assert manifest["config_hash"] == config_hash(resolved.config)
    assert manifest["seed"] == resolved.config.sampling.seed == 3
    assert resolved.config.sampling.units == UNITS
    assert manifest["device"] == "cpu"
    assert manifest["model_fingerprint"] == ModelAdapter.load(ModelSpec(str(demo_model_path))).fingerprint()
    assert manifest["packages"]["torch"] and manifest["packages"]["paribus"]
    assert manifest["started_at"] <= manifest["finished_at"]


def test_rerunning_the_resolved_config_gives_identical_effects(run_folder: Path, tmp_path: Path) -> None:
    again = paribus("run", str(run_folder / "config.yaml"), "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(
        pd.read_csv(run_folder / "effects.csv"), pd.read_csv(tmp_path / "again" / "effects.csv")
    )


def test_effects_recover_the_planted_mechanisms(run_folder: Path) -> None:
    effects = pd.read_csv(run_folder / "effects.csv")
    ate = effects[(effects["analysis"] == "ate") & (effects["method"] == "t")].set_index(
        ["treatment", "contrast", "estimand"]
    )
    insurance = ate.loc[("insurance", "none vs private", "total")]
    assert insurance["ci_high"] < 0 and insurance["estimate"] == pytest.approx(-1.5, abs=0.1)
    assert ate.loc[("insurance", "public vs private", "total")]["estimate"] == pytest.approx(-0.5, abs=0.1)
    assert ate.loc[("age", "old vs young", "total")]["ci_low"] > 0
    for null in [
        ("age", "old vs young", "direct"),
        ("sex", "male vs female", "total"),
        ("weekday", "weekend vs weekday", "total"),
    ]:
        assert -0.05 < ate.loc[null]["ci_low"] <= ate.loc[null]["ci_high"] < 0.05, null
    cate = effects[(effects["analysis"] == "cate") & (effects["treatment"] == "insurance") & (effects["method"] == "t")]
    assert set(cate[cate["contrast"] == "none vs private"]["stratum"]) == {"young", "old"}
    tested = effects["p_value"].notna()
    assert effects.loc[tested, "p_adjusted"].ge(effects.loc[tested, "p_value"]).all()


def test_mediation_through_the_factor_embedding_is_the_whole_effect(run_folder: Path) -> None:
    """Patching resid_pre.0 at the insurance tokens swaps the whole input: its indirect effect is the total."""
    mediation = pd.read_parquet(run_folder / "mediation.parquet")
    t_rows = mediation[mediation["method"] == "t"]
    total = t_rows[t_rows["effect"] == "total"].iloc[0]
    embedding = t_rows[
        (t_rows["site"] == "resid_pre.0") & (t_rows["position"] == "factor") & (t_rows["effect"] == "indirect")
    ]
    assert embedding["estimate"].iloc[0] == pytest.approx(total["estimate"], abs=1e-5)
    direct = t_rows[
        (t_rows["site"] == "resid_pre.0") & (t_rows["position"] == "factor") & (t_rows["effect"] == "direct")
    ]
    assert direct["estimate"].iloc[0] == pytest.approx(0.0, abs=1e-5)
    assert total["estimate"] == pytest.approx(-1.5, abs=0.1)
    heads = t_rows[(t_rows["component"] == "head") & (t_rows["effect"] == "indirect")]
    assert set(heads["head"]) == {0, 1, 2, 3} and set(heads["layer"]) == {0, 1}


def test_evidence_links_every_factor_with_an_effect(run_folder: Path) -> None:
    links = pd.read_csv(run_folder / "evidence_links.csv")
    assert set(links["factor"]) == {"insurance", "age", "sex", "weekday"}
    assert set(links["method"]) == {"attention", "attention_rollout", "gradient_x_input", "integrated_gradients"}
    first = links.groupby("method").head(1)
    assert (first["factor"] == "insurance").all()
    manifest = json.loads((run_folder / "manifest.json").read_text())
    assert manifest["evidence"]["completeness_max_abs_delta"] < 0.05
    assert "<script" not in (run_folder / "token_view.html").read_text()


def test_summary_states_the_insurance_and_placebo_effects(run_folder: Path) -> None:
    summary = (run_folder / "summary.md").read_text()
    assert "| insurance | do(none) vs do(private) | total |" in summary
    assert "| weekday | do(weekend) vs do(weekday) | total |" in summary
    assert "weekday (weekend vs weekday): no declared path to decision, and the run agrees" in summary
    assert "## insurance: do(none) vs do(private), per stratum" in summary
    assert "## Inside the model: insurance, do(none) vs do(private)" in summary
    assert "![layer x position heatmap](mediation_0_insurance.png)" in summary
    assert "## Evidence: attention, saliency and probes beside the effects" in summary


def test_bad_config_exits_2_with_the_path_and_no_traceback(tmp_path: Path, example: Path) -> None:
    data = yaml.safe_load(example.read_text())
    data["effects"][0]["treatment"] = "insurence"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    for command in ("validate", "run"):
        done = paribus(command, str(bad))
        assert done.returncode == 2
        assert "effects[0].treatment: treatment 'insurence' is not a factor; did you mean 'insurance'?" in done.stderr
        assert "Traceback" not in done.stderr


def test_cli_override_out_of_range_names_the_field(example: Path) -> None:
    done = paribus("run", str(example), "--units", "1")
    assert done.returncode == 2
    assert "sampling.units: Input should be greater than or equal to 2 (got 1)" in done.stderr


def test_existing_run_folder_is_never_overwritten(run_folder: Path, example: Path) -> None:
    before = (run_folder / "effects.csv").read_bytes()
    done = paribus("run", str(example), "--out", str(run_folder))
    assert done.returncode == 2  # a refused run folder is a user error
    assert "already exists and is not empty" in done.stderr
    assert (run_folder / "effects.csv").read_bytes() == before


def test_validate_accepts_the_example(example: Path) -> None:
    done = paribus("validate", str(example))
    assert done.returncode == 0
    assert "valid: triage-insurance: 5 factors" in done.stdout
    assert "1 patching sweep(s), evidence on" in done.stdout


def test_exact_mode_on_the_demo_gives_the_planted_population_effects(example: Path, tmp_path: Path) -> None:
    """Every unit of the triage space, weighted: age's total effect is the rule's 2.0*0.3 + 1.5*0.1 - 0.5*0.3 = 0.6."""
    from experiments import run_experiment

    experiment = load_experiment(
        example, overrides={"sampling": {"mode": "exact"}, "model": {"id": "builtin:triage-demo"}}
    )
    effects = run_experiment(experiment, out_dir=tmp_path / "exact").effects.to_frame()
    ate = effects[effects["analysis"] == "ate"].set_index(["treatment", "contrast", "estimand"])
    assert set(ate["method"]) == {"exact"}
    assert (ate["ci_low"] == ate["ci_high"]).all()
    assert ate.loc[("age", "old vs young", "total"), "estimate"] == pytest.approx(0.6, abs=0.03)
    assert ate.loc[("insurance", "none vs private", "total"), "estimate"] == pytest.approx(-1.5, abs=0.03)
    assert abs(ate.loc[("weekday", "weekend vs weekday", "total"), "estimate"]) < 0.01
    assert len(pd.read_parquet(tmp_path / "exact" / "units.parquet")) == 2 * 5 * 3 * 2 * 2 * 3 * 4 * 4 * 2


def test_attribution_screen_then_exact_verification(example: Path, tmp_path: Path) -> None:
    """method: attribution screens every site, verifies the top ones exactly, and reports their rank agreement."""
    from experiments import run_experiment

    screen = {
        "treatment": "insurance",
        "contrast": ["none", "private"],
        "components": ["resid_pre", "head"],
        "positions": ["factor", "last"],
        "method": "attribution",
        "verify_top": 6,
        "units": 16,
    }
    experiment = load_experiment(example, overrides={"sampling": {"units": 40}})
    experiment = compile_config(
        experiment.config.model_copy(update={"mediation": [MediationConfig(**screen)], "evidence": None})
    )
    result = run_experiment(experiment, out_dir=tmp_path / "screen")
    mediation = pd.read_parquet(tmp_path / "screen" / "mediation.parquet")
    approximate = mediation[(mediation["method"] == "attribution_t") & (mediation["effect"] == "indirect")]
    exact = mediation[(mediation["method"] == "t") & (mediation["effect"] == "indirect")]
    assert len(approximate) == (2 + 2 * 4) * 2
    assert 0 < len(exact) <= len(approximate)
    top = approximate.reindex(approximate["estimate"].abs().sort_values(ascending=False).index).head(6)
    assert set(top["site"]) <= set(exact["site"])
    record = result.manifest["mediation"][0]
    assert record["verified"] == 6 and -1 <= record["rank_agreement"]["spearman"] <= 1


def test_layer_beyond_the_model_names_the_field_and_keeps_the_effects(example: Path, tmp_path: Path) -> None:
    from experiments import ConfigError, run_experiment

    experiment = load_experiment(example, overrides={"sampling": {"units": 10}})
    bad = MediationConfig(treatment="insurance", contrast=["none", "private"], layers=[7])
    experiment = compile_config(experiment.config.model_copy(update={"mediation": [bad], "evidence": None}))
    with pytest.raises(ConfigError, match=r"^mediation\[0\]\.layers: .*7"):
        run_experiment(experiment, out_dir=tmp_path / "bad")
    assert (tmp_path / "bad" / "effects.csv").exists()
    manifest = json.loads((tmp_path / "bad" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "mediation[0].layers" in manifest["error"]
