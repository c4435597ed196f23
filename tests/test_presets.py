"""The presets: every YAML loads, builds at its own shape and runs one clip, the paper table
agrees with the counts, and `python -m mer presets` prints the listing.

Building is what costs (~0.5 s per preset on 2 cores), so each preset is built once, at its
full input shape, and a single all-zero clip goes through it eagerly: cheaper than building it
a second time at a tiny shape. Nothing is trained.
"""

import numpy as np
import pytest

from mer.cli import main
from mer.config import CONFIG_DIR, PROJECT_ROOT, ConfigError, load_config
from mer.data.inputs import input_specs
from mer.presets import (
    PAPER_FIGURES,
    build_preset,
    count_line,
    format_summaries,
    preset_paths,
    summarize_preset,
)

PRESETS = preset_paths()
NAMES = [path.relative_to(CONFIG_DIR).as_posix() for path in PRESETS]


@pytest.fixture(scope="module")
def presets():
    """name -> (summary, probabilities of one all-zero clip) for every preset."""
    results = {}
    for path in PRESETS:
        config, model = build_preset(path)
        clips = [np.zeros((1, *spec.shape), "float32") for spec in input_specs(config.data)]
        probabilities = np.asarray(model(clips if len(clips) > 1 else clips[0]))
        summary = summarize_preset(path, (config, model))
        results[summary.name] = (summary, probabilities)
    return results


@pytest.fixture(scope="module")
def summaries(presets):
    return {name: summary for name, (summary, _) in presets.items()}


def test_presets_cover_the_issue_list():
    expected = {
        "ablations/single_branch_cce.yaml", "ablations/single_branch_wcce.yaml",
        "ablations/single_branch_lstm.yaml", "ablations/single_branch_gru.yaml",
        "ablations/single_branch_gru_cbam.yaml", "ablations/dual_branch_cbam.yaml",
        "ablations/dual_branch_ec_cbam.yaml", "ablations/dual_branch_ec_cbam_multi_head.yaml",
        "ablations/dual_branch_ec_cbam_msmh.yaml", "ablations/samm_with_au.yaml",
        "ablations/samm_without_au.yaml", "ablations/casme2_with_au.yaml",
        "ablations/casme2_without_au.yaml", "variants/smic.yaml", "variants/casme3.yaml",
        "variants/casme_square_4class.yaml", "variants/deception.yaml",
    }
    assert expected <= set(NAMES)
    assert set(PAPER_FIGURES) <= set(NAMES)  # no figures for a preset that is not there


@pytest.mark.slow
def test_parameter_counts_at_full_shape(summaries):
    counts = {name: summary.params for name, summary in summaries.items()}
    assert counts["me_model.yaml"] == 2_836_759
    assert counts["dual_branch_au.yaml"] == 3_817_055
    # The ablation chain ends at the published network; the AU ablations keep its layers.
    assert counts["ablations/dual_branch_ec_cbam_msmh.yaml"] == 2_836_759
    assert counts["ablations/samm_without_au.yaml"] == 3_817_055
    assert counts["ablations/single_branch_cce.yaml"] == 1_891_491
    assert counts["ablations/single_branch_lstm.yaml"] == 2_225_507
    assert counts["ablations/single_branch_gru.yaml"] == 1_931_619
    assert counts["ablations/dual_branch_ec_cbam.yaml"] == 1_964_235
    assert counts["ablations/dual_branch_ec_cbam_multi_head.yaml"] == 10_365_643
    assert counts["variants/deception.yaml"] == 7_103_190
    assert summaries["variants/deception.yaml"].input_shape == (16, 128, 128, 3)
    assert summaries["variants/casme_square_4class.yaml"].classes == 4
    assert summaries["variants/smic.yaml"].streams == 1
    # the AU detector: FMER's P3D part (24,944,073 trainable) and its BatchNormalization
    # statistics; its outputs are the 9 AUs, not the dataset's 4 classes
    assert counts["au_detector.yaml"] == 25_001_673
    assert (summaries["au_detector.yaml"].classes, summaries["au_detector.yaml"].predicts) == (
        9, "aus"
    )


@pytest.mark.slow
def test_every_mismatch_says_why_and_every_match_says_nothing(summaries):
    for name, summary in summaries.items():
        paper = summary.paper
        if summary.matches_paper is False:
            assert paper.differs, f"{name}: {summary.params:,} vs {paper.params}M, no reason"
        elif paper is not None:
            assert not paper.differs, f"{name}: matches the paper but gives a reason"


@pytest.mark.slow
def test_listing_shows_counts_figures_and_reasons(summaries):
    text = format_summaries(list(summaries.values()))
    for name, summary in summaries.items():
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        assert f"{summary.params:,}" in line
    assert "MLSP 2024: UF1/UAR SMIC .732/.751, SAMM .720/.744, CASME II .818/.827" in text
    assert "ACC deception .836" in text and "CAS(ME)^3 .8036/.8161" in text
    assert "10.5M differs" in text and "why: Keras MultiHeadAttention" in text


@pytest.mark.slow
def test_count_line_counts_the_table_rows_and_the_readme_quotes_it(summaries):
    """The last line's counts are those of the rows' verdicts, and the README's figures are
    that line, verbatim."""
    text = format_summaries(list(summaries.values()))
    rows = [line for line in text.splitlines() if line.split(" ", 1)[0] in summaries]
    verdicts = [line.split()[-1] for line in rows]
    assert len(rows) == len(summaries)
    expected = (
        f"Presets listed: {len(rows)}; {verdicts.count('matches')} match the paper's parameter "
        f"count, {verdicts.count('differs')} differ (reasons above), {verdicts.count('-')} have "
        "no published count."
    )
    assert text.splitlines()[-1] == expected == count_line(list(summaries.values()))
    assert verdicts.count("matches") and verdicts.count("differs") and verdicts.count("-")
    assert expected in (PROJECT_ROOT / "README.md").read_text()


def test_presets_command_prints_the_named_presets(capsys):
    assert main(["presets", "config/me_model.yaml", "config/ablations/single_branch_cce.yaml"]) == 0
    out = capsys.readouterr().out
    assert "1 x 10x128x128x3" in out and "2,836,759  2.8M matches" in out
    assert "1,891,491  1.8M differs" in out and "    why: the Dense(128)" in out


@pytest.mark.slow
def test_presets_command_lists_an_au_detector_by_its_aus(capsys):
    assert main(["presets", "config/demo_au_detector.yaml"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("demo_au_detector.yaml "))
    assert "1 x 16x64x64x3" in line and "  7 AUs  " in line and "1,588,407" in line


@pytest.mark.slow
def test_every_preset_runs_one_clip(presets):
    """Class probabilities sum to 1; an AU detector's are one sigmoid per AU."""
    for name, (summary, probabilities) in presets.items():
        assert probabilities.shape == (1, summary.classes), name
        if summary.predicts == "aus":
            assert ((0 < probabilities) & (probabilities < 1)).all(), name
        else:
            np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.temporal=rnn", "model.temporal: 'rnn' is not one of"),
        ("model.pooling=mean", "model.pooling: 'mean' is not one of"),
        ("model.branches=3", "model.branches must be 1 or 2, got 3"),
        ("model.head_dropout=1.0", "model.head_dropout must be in [0, 1), got 1.0"),
        ("model.causal_attention_heads=-1", "causal_attention_heads must be >= 0, got -1"),
    ],
)
def test_variant_settings_are_checked(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(CONFIG_DIR / "me_model.yaml", [override])
    assert message in str(error.value)


def test_variant_combinations_are_checked():
    with pytest.raises(ConfigError, match="au_regions.. needs model.branches=2"):
        load_config(CONFIG_DIR / "dual_branch_au.yaml", ["model.branches=1"])
    with pytest.raises(ConfigError, match="causal_attention_heads needs model.pooling"):
        load_config(CONFIG_DIR / "variants/deception.yaml", ["model.pooling=none"])
    # The MSMH divisibility rule binds the width MSMH reads, and only with MSMH.
    load_config(CONFIG_DIR / "me_model.yaml", ["model.gru_units=100", "model.pooling=none"])
    with pytest.raises(ConfigError, match=r"model.dense_units\[-1\] \(64\) must be divisible"):
        load_config(CONFIG_DIR / "me_model.yaml", ["model.temporal=none"])
