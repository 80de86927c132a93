"""The bench's measurements run end to end on tiny sizes and report sane numbers."""

import numpy as np
import pytest

from bench import training
from bench.__main__ import render
from engine import runs


def test_data_pipeline_compares_both_pipelines(sample):
    """Each rate is the images it counted over the time it took, at least the images asked for."""
    result = training.data_pipeline(sample, images=256)
    for path in ("reference", "batched"):
        assert result[f"{path}_images"] >= 256
        assert np.isclose(result[f"{path}_images_per_s"], result[f"{path}_images"] / result[f"{path}_seconds"])
    assert np.isclose(result["speedup"], result["batched_images_per_s"] / result["reference_images_per_s"])


def test_training_throughput_reports_both_rates(sample):
    """End to end is the run's own figure: exactly `steps` steps of `batch_size` images over the
    epoch's training time (evaluation excluded)."""
    result = training.training_throughput(sample, width=4, batch_size=32, steps=3)
    assert result["end_to_end_steps"] == 3
    assert np.isclose(result["end_to_end_images_per_s"], 3 * 32 / result["end_to_end_train_seconds"])
    assert np.isclose(result["ratio"], result["end_to_end_images_per_s"] / result["model_alone_images_per_s"])
    table = render({"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0, "training": result})
    assert "ratio" in table and "width 4" in table


def test_table_reports_grad_cam_per_image_and_rerenders_a_saved_result(tmp_path, capsys):
    import json

    from bench.__main__ import main

    result = {"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0, "dashboard": {"grad_cam_16_s": 1.6}}
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(result))
    assert main(["--render", str(saved)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "ms per image" in line)
    assert row.rstrip(" |").endswith("100")


def test_an_out_path_in_a_missing_folder_is_refused_before_any_work(tmp_path, capsys):
    from bench.__main__ import main

    assert main(["--out", str(tmp_path / "missing" / "result.json")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "missing").exists()


def test_table_reports_each_page_cold_and_warm_in_the_browser():
    browser = {"cold_s": {"runs": {"script": 1.5, "drawn": 2.5}, "compare": {"script": 1.75, "drawn": 2.75}},
               "warm_s": {"runs": {"script": 0.25, "drawn": 0.5}, "compare": {"script": 0.125, "drawn": 0.25}},
               "filter_change_s": 0.375, "grad_cam_16_s": 1.25, "grad_cam_16_first_s": 4.5}
    table = render({"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0,
                    "dashboard": {"browser": browser}})
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()[2:]}
    assert rows["browser: runs page, cold / warm s (script, drawn)"] == "1.50, 2.50 / 0.25, 0.50"
    assert rows["browser: compare page, cold / warm s (script, drawn)"] == "1.75, 2.75 / 0.12, 0.25"
    assert rows["browser: gallery filter change, s"] == "0.38"
    assert rows["browser: Grad-CAM 16 maps, s (first, with model load)"] == "1.25 (4.50)"


def test_table_reports_the_runs_page_and_list_at_each_number_of_runs(tmp_path, capsys):
    import json

    from bench.__main__ import main

    sizes = [{"runs": n, "first_load_s": 0.01 * i, "list_json_s": 0.2 + i, "page_first_render_s": 0.5 + i,
              "page_warm_rerun_s": 0.1, "page_filter_change_s": 0.05, "compare_10_s": 0.3}
             for i, n in enumerate((20, 10_000))]
    result = {"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0, "many_runs": {"results": sizes}}
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(result))
    assert main(["--render", str(saved)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "Runs page" in line]
    assert [row.split("|")[1].split(":")[0].strip() for row in rows] == ["20 runs", "10,000 runs"]
    assert rows[1].rstrip(" |").endswith("0.01 / 1.20 / 1.50 / 0.10 / 0.05 / 0.30 s")


def test_the_label_noise_bench_flips_a_seeded_share_and_scores_as_mann_whitney():
    """The flips are exactly 5% of the labels, each to another class, the same for a seed; the
    AUROC is the probability that a flipped label outranks a kept one (ties half), as scipy's
    Mann-Whitney U over the two groups gives it."""
    from scipy.stats import mannwhitneyu

    from bench import label_noise

    labels = np.random.default_rng(1).integers(0, 10, 2000)
    noisy, flipped = label_noise.flip_labels(labels, 0.05, 10, seed=3)
    assert flipped.sum() == 100 and (noisy[flipped] != labels[flipped]).all()
    assert (noisy[~flipped] == labels[~flipped]).all() and noisy.max() <= 9
    again, same = label_noise.flip_labels(labels, 0.05, 10, seed=3)
    assert np.array_equal(again, noisy) and np.array_equal(same, flipped)

    score = np.round(np.random.default_rng(2).normal(size=2000) + 1.5 * flipped, 1)  # rounded: ties
    expected = mannwhitneyu(score[flipped], score[~flipped]).statistic / (flipped.sum() * (~flipped).sum())
    assert label_noise.auroc(score, flipped) == pytest.approx(expected)
    assert label_noise.auroc(flipped.astype(float), flipped) == 1.0
    assert label_noise.precision_at_k(flipped.astype(float), flipped) == 1.0
    assert label_noise.precision_at_k(-flipped.astype(float), flipped) == 0.0


def test_the_dashboard_bench_refuses_to_keep_its_runs_in_a_folder_that_holds_others(tmp_path, capsys, monkeypatch):
    """Its runs would join the ones already there, and every page would be timed over more runs."""
    from bench import dashboard_bench

    (tmp_path / "an-earlier-run").mkdir()
    monkeypatch.setattr("sys.argv", ["dashboard_bench", "--keep", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        dashboard_bench.main()
    assert exit_.value.code == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["an-earlier-run"]


def test_the_ab_bench_checks_each_revision_out_apart_and_refuses_an_unknown_one_first(tmp_path, capsys,
                                                                                     monkeypatch):
    """Each revision is served from its own checkout at that commit, gone afterwards; a revision
    that names no commit stops it before the sweep it times is trained."""
    import subprocess

    from bench import dashboard_ab

    def commit(folder, revision: str = "HEAD") -> str:
        return subprocess.run(["git", "rev-parse", revision], cwd=folder, capture_output=True, text=True).stdout

    with dashboard_ab.worktree("HEAD~1", tmp_path / "rev") as folder:
        assert commit(folder) == commit(dashboard_ab.PROJECT_ROOT, "HEAD~1") != commit(dashboard_ab.PROJECT_ROOT)
        assert (folder / "dashboard" / "app.py").is_file()
    assert not (tmp_path / "rev").exists()
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))  # where its sweep would be trained
    monkeypatch.setattr("sys.argv", ["dashboard_ab", "HEAD", "no-such-revision"])
    with pytest.raises(SystemExit) as exit_:
        dashboard_ab.main()
    assert exit_.value.code == 2
    assert not list(temp.iterdir())
    assert "'no-such-revision' names no commit" in capsys.readouterr().err


def test_the_lr_suggestion_bench_trains_once_per_distinct_suggestion_and_ranks_by_worst_regret(tmp_path):
    """Each suggestion's LR is the one the range test recorded, a run was trained at each distinct
    one, and the most robust suggestion is the one whose worst shortfall from the best suggestion
    of a setting is smallest: here `valley`, never more than 1 point behind, where `steepest` once
    fell 10."""
    from bench import lr_suggestions
    from engine.lr_finder import SUGGESTIONS

    if not lr_suggestions.SAMPLE.is_file():
        pytest.skip("needs the CIFAR-10 sample")
    tiny = ("--train-subset", "256", "--test-subset", "128", "--lr-finder-iters", "12", "--max-steps", "4")
    found = lr_suggestions.one_setting(tmp_path, "s11", 2, 1, 1, say=lambda _: None, extra=tiny)
    (finder_run,) = runs.list_runs(tmp_path / "s11-w2-s1-range-test")
    recorded = finder_run.lr_finder["suggestions"]
    assert {name: v["lr"] for name, v in found["suggestions"].items()} == {n: recorded[n]["lr"] for n in SUGGESTIONS}
    trained = [p for p in tmp_path.iterdir() if "-lr-" in p.name]
    assert len(trained) == len({v["lr"] for v in recorded.values()})

    def setting(steepest: float, valley: float, minimum: float) -> dict:
        return {"suggestions": {"steepest": {"lr": 0.1, "best_test_acc": steepest},
                                "valley": {"lr": 0.05, "best_test_acc": valley},
                                "minimum": {"lr": 0.02, "best_test_acc": minimum}}}

    summary = lr_suggestions.summarise([setting(0.80, 0.79, 0.70), setting(0.60, 0.70, 0.69)])
    assert summary["steepest"]["regret_max"] == pytest.approx(0.10)
    assert summary["valley"]["regret_max"] == pytest.approx(0.01)
    assert summary["minimum"]["regret_mean"] == pytest.approx(0.055)
    assert lr_suggestions.most_robust(summary) == "valley"


def test_the_studied_combinations_rank_wrong_labels_first_when_the_signals_agree():
    """Each combination turns 'low probability, low margin' into 'more suspicious', whatever the
    scales of the signals it sums: on recorded arrays where the flipped images have a low
    probability of their label and a negative margin, each ranks them first."""
    from bench import label_noise
    from engine.dynamics import Dynamics
    from engine.dynamics_scores import image_scores

    rng = np.random.default_rng(0)
    n, epochs = 400, 6
    flipped = np.zeros(n, bool)
    flipped[rng.choice(n, 20, replace=False)] = True
    prob = np.where(flipped, rng.uniform(0.0, 0.3, (epochs, n)), rng.uniform(0.5, 1.0, (epochs, n)))
    margin = np.where(flipped, rng.uniform(-3, -1, (epochs, n)), rng.uniform(0.5, 4, (epochs, n)))
    prob[0, :5] = np.nan  # images not drawn in an epoch
    final = np.where(flipped, rng.uniform(0.0, 0.2, n), rng.uniform(0.6, 1.0, n))
    recorded = Dynamics(epochs=np.arange(1, epochs + 1), train_prob=prob.astype(np.float16),
                        train_margin=margin.astype(np.float16), train_correct=~flipped & (prob > 0.5),
                        test_pred=np.zeros((epochs, 10), np.uint8), test_prob=np.zeros((epochs, 10), np.float16),
                        final_train_prob=final.astype(np.float16),
                        final_train_confidence=np.where(flipped, 0.9, final).astype(np.float16))
    found = label_noise.combinations(image_scores(recorded), recorded)
    assert len(found) == 4
    for name, score in found.items():
        assert label_noise.auroc(score, flipped) == 1.0, name
    recorded.final_train_prob = None  # a run whose last epoch is not recorded: nothing to combine
    assert label_noise.combinations(image_scores(recorded), recorded) == {}
