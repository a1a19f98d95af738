"""bench/growth.py: the savings arithmetic, and a does-it-run check of every method (--quick)."""
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("bench_growth", REPO / "bench" / "growth.py")
growth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(growth)


def curve(*points):
    return [{"step": i, "tokens": i, "flops": f, "seconds": s, "loss": l}
            for i, (f, s, l) in enumerate(points)]


def test_cost_to_reach_interpolates_between_eval_points():
    points = curve((10, 1, 5.0), (20, 2, 4.0), (30, 3, 3.0))
    assert growth.cost_to_reach(points, 3.5, "flops") == pytest.approx(25)
    assert growth.cost_to_reach(points, 5.5, "seconds") == 1  # reached at the first point
    assert growth.cost_to_reach(points, 2.0, "flops") is None


def test_savings_reuse_and_end_to_end():
    runs = {"scratch": {"curve": curve((100, 10, 4.0), (200, 20, 3.0))},
            "small": {"curve": curve((10, 1, 5.0)), "results": {"flops": 40, "train_seconds": 4}},
            "stack": {"curve": curve((60, 6, 3.5), (100, 10, 3.0))},
            "pli": {"curve": curve((100, 10, 3.5), (300, 30, 3.2))}}
    summary = growth.summarise(runs)
    assert summary["goal_eval_loss"] == 3.0
    assert "regime" not in summary  # no unigram line given: no regime claimed
    stack = summary["methods"]["stack"]
    assert stack["reuse_flops_savings"] == pytest.approx(0.5)  # 100 vs 200
    assert stack["end_to_end_flops_savings"] == pytest.approx(1 - 140 / 200)  # + small's 40
    assert stack["reuse_seconds_savings"] == pytest.approx(0.5)
    assert summary["methods"]["pli"]["reached_goal"] is False
    assert summary["methods"]["pli"]["reuse_flops_savings"] is None


def seed_results(seed, scratch_loss, stack_flops, unigram=6.5, small_loss=6.0):
    """A one-seed results dict as bench/growth.py writes it (curves made up, arithmetic real)."""
    runs = {"scratch": {"curve": curve((100, 10, scratch_loss + 1), (200, 20, scratch_loss))},
            "small": {"curve": curve((10, 1, small_loss)), "results": {"flops": 40, "train_seconds": 4}},
            "stack": {"curve": curve((stack_flops, 8, scratch_loss))}}
    return {"commands": [f"python bench/growth.py --seed {seed}"],
            "machine": {"cpu": "test", "cores": 2},
            "setup": {"preset": "bert", "source": "s.json", "target": "t.json", "steps": 2,
                      "small_steps": 1, "batch_size": 8, "block_size": 64, "bf16": "false",
                      "learning_rate": 1e-3, "warmup_steps": 1, "grown_learning_rate": 1e-3,
                      "grown_warmup_steps": 1, "ligo_steps": 1, "seeds": [seed]},
            "seeds": {str(seed): {"runs": runs, "unigram_loss": unigram,
                                  "summary": growth.summarise(runs, unigram)}}}


def test_paired_differences_remove_the_goal_shared_by_a_seeds_methods():
    """LiGO − fixed operator seed by seed: a seed whose goal is easy lifts both rows alike,
    so the per-seed difference has no spread where the savings themselves do."""
    seeds = {}
    for seed, (stack_flops, ligo_flops) in enumerate(((100, 90), (60, 50), (140, 130)), start=1):
        runs = seed_results(seed, 5.0, stack_flops)["seeds"][str(seed)]["runs"]
        runs["ligo"] = {"curve": curve((ligo_flops, 8, 5.0))}  # reaches the goal at ligo_flops
        seeds[str(seed)] = {"runs": runs, "summary": growth.summarise(runs, 6.5)}
    summary = growth.aggregate(seeds)
    assert summary["methods"]["ligo"]["reuse_flops_savings"]["std"] == pytest.approx(0.2)
    pair = summary["paired"]["ligo"]["stack"]
    assert pair["difference"]["mean"] == pytest.approx(0.05)  # 10 of scratch's 200 FLOPs
    assert pair["difference"]["std"] == pytest.approx(0.0, abs=1e-12)
    assert (pair["seeds"], pair["difference"]["n"], pair["fixed_missed"], pair["ligo_missed"]) == (3, 3, 0, 0)
    assert "ligo − stack: 5.0 ± 0.0 points (3 of 3 seeds)" in growth.markdown(
        {"summary": {**summary, "seeds": ["1", "2", "3"]}, "setup": seed_results(1, 5, 1)["setup"],
         "machine": {"cpu": "test", "cores": 2}, "commands": []})
    # a seed where only the fixed operator misses the goal has no difference: it is counted
    seeds["3"]["runs"]["stack"]["curve"] = curve((140, 8, 5.1))
    seeds["3"]["summary"] = growth.summarise(seeds["3"]["runs"], 6.5)
    pair = growth.aggregate(seeds)["paired"]["ligo"]["stack"]
    assert (pair["difference"]["n"], pair["fixed_missed"], pair["ligo_missed"]) == (2, 1, 0)
    # ... and so is one where only LiGO misses it: its misses are not hidden either
    seeds["2"]["runs"]["ligo"]["curve"] = curve((50, 8, 5.1))
    seeds["2"]["summary"] = growth.summarise(seeds["2"]["runs"], 6.5)
    summary = growth.aggregate(seeds)
    pair = summary["paired"]["ligo"]["stack"]
    assert (pair["difference"]["n"], pair["fixed_missed"], pair["ligo_missed"]) == (1, 1, 1)
    assert "1 seed(s) where only ligo missed the goal" in growth._paired_lines(summary["paired"])[1]
    # ahead: seed 1 (more savings) and seed 3 (only stack missed); not seed 2
    assert (pair["both_missed"], pair["ligo_closer"], pair["ligo_ahead"]) == (0, 0, 2)
    # a seed where both miss counts for the one that ended nearer the goal (5.0)
    seeds["1"]["runs"]["stack"]["curve"] = curve((100, 8, 5.1))
    seeds["1"]["runs"]["ligo"]["curve"] = curve((90, 8, 5.05))
    seeds["1"]["summary"] = growth.summarise(seeds["1"]["runs"], 6.5)
    summary = growth.aggregate(seeds)
    pair = summary["paired"]["ligo"]["stack"]
    assert (pair["difference"], pair["both_missed"], pair["ligo_closer"], pair["ligo_ahead"]) == (None, 1, 1, 2)
    assert ("1 where both missed (ligo ended nearer the goal on 1): ligo ahead on 2 of 3 seeds"
            in growth._paired_lines(summary["paired"])[1])
    seeds["1"]["runs"]["ligo"]["curve"] = curve((90, 8, 5.2))  # now further than stack's 5.1
    seeds["1"]["summary"] = growth.summarise(seeds["1"]["runs"], 6.5)
    pair = growth.aggregate(seeds)["paired"]["ligo"]["stack"]
    assert (pair["ligo_closer"], pair["ligo_ahead"]) == (0, 1)


def test_without_the_operator_bounds_what_a_cheaper_operator_phase_could_save():
    """A LiGO row's savings with its operator's FLOPs left out, against the best fixed row of
    each seed and the best linear one (msg's new units are random, no function of the source)."""
    seeds = {}
    for seed, (ligo_flops, operator, double, msg) in enumerate(((90, 20, 85, 60), (80, 20, 85, 70)), start=1):
        runs = seed_results(seed, 5.0, 120)["seeds"][str(seed)]["runs"]  # scratch: 200 FLOPs
        runs["double"] = {"curve": curve((double, 8, 5.0))}
        runs["msg"] = {"curve": curve((msg, 8, 5.0))}
        runs["ligo"] = {"curve": curve((ligo_flops, 8, 5.0)), "results": {"growth_flops": operator}}
        seeds[str(seed)] = {"runs": runs, "summary": growth.summarise(runs, 6.5)}
    entry = growth.without_operator(seeds)["ligo"]
    assert entry["savings"]["mean"] == pytest.approx(1 - 65 / 200)  # (70 + 60) / 2 FLOPs to the goal
    assert entry["operator_share"]["mean"] == pytest.approx(0.1)
    fixed, linear = entry["minus_best_fixed"], entry["minus_best_linear"]
    assert fixed["rows"] == ["msg"] and linear["rows"] == ["double"]
    assert fixed["difference"]["mean"] == pytest.approx(((60 - 70) + (70 - 60)) / 2 / 200)
    assert fixed["ahead"] == 1  # seed 2: 60 FLOPs without the operator against msg's 70
    assert linear["difference"]["mean"] == pytest.approx(((85 - 70) + (85 - 60)) / 2 / 200)
    assert linear["ahead"] == 2
    line = growth._without_operator_lines(seeds)[1]
    assert "ligo 67.5 ± 3.5 % (its operator: 10.0 ± 0.0 % of scratch's FLOPs)" in line
    assert "best fixed row of each seed (msg): 0.0 ± 7.1 points, ahead on 1 of 2 seeds" in line
    assert "best linear one of each seed (double): 10.0 ± 3.5 points, ahead on 2 of 2 seeds" in line
    # a seed where LiGO missed the goal, or a file without operator FLOPs, is left out
    seeds["2"]["runs"]["ligo"]["curve"] = curve((80, 8, 5.1))
    seeds["2"]["summary"] = growth.summarise(seeds["2"]["runs"], 6.5)
    assert growth.without_operator(seeds)["ligo"]["seeds"] == 1
    del seeds["1"]["runs"]["ligo"]["results"]
    assert growth.without_operator(seeds) == {} and growth._without_operator_lines(seeds) == []


def test_regime_label_flips_when_scratch_ends_less_than_one_nat_below_the_unigram_line():
    learning = growth.summarise(seed_results(1, 5.4, 100)["seeds"]["1"]["runs"], unigram=6.5)
    assert learning["regime"] == "learning"
    assert learning["scratch_below_unigram"] == pytest.approx(1.1)
    plateau = growth.summarise(seed_results(1, 5.6, 100)["seeds"]["1"]["runs"], unigram=6.5)
    assert plateau["regime"] == "plateau"
    # one plateau seed makes the whole file a plateau result, and the table says so
    results = {**seed_results(1, 5.4, 100)}
    results["seeds"]["2"] = seed_results(2, 5.6, 100)["seeds"]["2"]
    results["summary"] = growth.aggregate(results["seeds"])
    assert results["summary"]["regime"] == "plateau"
    assert growth.markdown(results).startswith("**Regime: plateau.**")
    del results["seeds"]["2"]
    results["summary"] = growth.aggregate(results["seeds"])
    assert growth.markdown(results).startswith("**Regime: learning.**")


def test_a_source_already_at_the_goal_is_not_a_growth_comparison():
    """A source that ends at or below scratch's final loss "saves" by construction."""
    results = seed_results(1, 5.0, 100, small_loss=4.9)
    results["summary"] = growth.aggregate(results["seeds"])
    assert results["seeds"]["1"]["summary"]["source_above_goal"] == pytest.approx(-0.1)
    assert results["summary"]["regime"] == "source_reaches_goal"
    assert growth.markdown(results).startswith("**Regime: the source reaches the goal.**")
    # the plateau is the worse label when both hold
    assert growth.summarise(seed_results(1, 6.0, 100, small_loss=5.9)["seeds"]["1"]["runs"],
                            unigram=6.5)["regime"] == "plateau"


def test_merge_combines_the_methods_of_one_seed_run_at_two_times(tmp_path):
    """More methods of a seed, run later with its scratch and source rerun (deterministic per
    seed): the two files hold the same scratch run and combine into one seed; a file whose
    scratch differs, that ran elsewhere, or that adds nothing is refused."""
    first = seed_results(1, 5.0, 100)
    later = seed_results(1, 5.0, 100)
    later["seeds"]["1"]["runs"].pop("stack")
    later["seeds"]["1"]["runs"]["msg"] = {"curve": curve((60, 6, 5.0))}
    for point in later["seeds"]["1"]["runs"]["scratch"]["curve"]:
        point["seconds"] += 1.0  # the rerun's clock differs; its curve does not
    later["seeds"]["1"]["summary"] = growth.summarise(later["seeds"]["1"]["runs"], 6.5)
    other = seed_results(2, 5.0, 60)
    paths = {}
    for name, results in (("first", first), ("later", later), ("other", other)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(results))
    merged = growth.merge([paths["first"], paths["other"], paths["later"]])
    assert merged["setup"]["seeds"] == ["1", "2"]
    assert list(merged["seeds"]["1"]["runs"]) == ["scratch", "small", "stack", "msg"]
    methods = merged["summary"]["methods"]
    assert methods["msg"]["seeds"] == 1 and methods["stack"]["seeds"] == 2
    assert methods["msg"]["reuse_flops_savings"]["mean"] == pytest.approx(0.7)  # 60 of 200
    assert len(merged["commands"]) == 3
    moved = json.loads(paths["later"].read_text())
    moved["seeds"]["1"]["runs"]["scratch"]["curve"][-1]["loss"] = 4.99  # another goal
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    with pytest.raises(SystemExit, match="scratch run differs"):
        growth.merge([paths["first"], tmp_path / "moved.json"])
    elsewhere = {**later, "machine": {"cpu": "other", "cores": 2}}
    (tmp_path / "elsewhere.json").write_text(json.dumps(elsewhere))
    with pytest.raises(SystemExit, match="different machines"):
        growth.merge([paths["first"], tmp_path / "elsewhere.json"])
    with pytest.raises(SystemExit, match="adds no method"):
        growth.merge([paths["later"], paths["first"], paths["later"]])


def test_a_growing_row_whose_run_never_grew_is_named_under_the_table():
    """staged's slope rule may not fire within the budget: the run then trained the source's
    size throughout, and the table must not let its row pass for a growth result."""
    results = seed_results(1, 5.0, 100)
    runs = results["seeds"]["1"]["runs"]
    runs["staged"] = {"curve": curve((50, 5, 5.3)), "growth_at": {"flops": [], "seconds": []}}
    runs["pli"] = {"curve": curve((150, 15, 5.0)), "growth_at": {"flops": [40.0], "seconds": [4.0]}}
    results["summary"] = growth.aggregate(results["seeds"])
    table = growth.markdown(results)
    assert "staged never grew (seed 1): no growth event in its run" in table
    assert "pli never grew" not in table
    runs["staged"]["growth_at"]["flops"].append(30.0)  # it grew: nothing to say
    assert "never grew" not in growth.markdown(results)
    del runs["staged"]["growth_at"]  # files from before growth_at was recorded: unknown, silent
    assert "never grew" not in growth.markdown(results)


def test_merge_averages_the_savings_of_two_seeds(tmp_path):
    files = []
    for seed, stack_flops in ((1, 100), (2, 60)):  # stack reaches the goal at 100 / 60 of 200
        files.append(tmp_path / f"seed{seed}.json")
        files[-1].write_text(json.dumps(seed_results(seed, 5.0, stack_flops)))
    merged = growth.merge(files)
    assert merged["setup"]["seeds"] == ["1", "2"]
    stack = merged["summary"]["methods"]["stack"]["reuse_flops_savings"]
    assert stack["mean"] == pytest.approx((0.5 + 0.7) / 2)
    assert stack["std"] == pytest.approx(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) ** 0.5)  # n - 1
    assert stack["n"] == 2
    assert "| stack | 2 | 60.0 ± 14.1 % |" in growth.markdown(merged)
    assert len(merged["commands"]) == 2
    assert "machine: test, 2 cores." in growth.markdown(merged)
    elsewhere = seed_results(2, 5.0, 60)
    elsewhere["machine"] = {"cpu": "other", "cores": 4, "torch": "2.13.0"}
    (tmp_path / "elsewhere.json").write_text(json.dumps(elsewhere))
    mixed = growth.merge([files[0], tmp_path / "elsewhere.json"])
    assert mixed["machine_by_seed"] == {"1": {"cpu": "test", "cores": 2}, "2": elsewhere["machine"]}
    assert "machines: test, 2 cores (seed 1); other, 4 cores, torch 2.13.0 (seed 2)." in growth.markdown(mixed)
    with pytest.raises(SystemExit, match="seed 1"):
        growth.merge([files[0], files[0]])
    # a row's own settings matter only between files that ran that row
    dropping = seed_results(5, 5.0, 80)
    dropping["setup"]["token_drop"] = 0.5
    dropping["seeds"]["5"]["runs"]["ligo_token_drop"] = dropping["seeds"]["5"]["runs"]["stack"]
    (tmp_path / "dropping.json").write_text(json.dumps(dropping))
    assert growth.merge([files[0], tmp_path / "dropping.json"])["setup"]["token_drop"] == 0.5
    dropping["setup"]["token_drop"], dropping["seeds"]["6"] = 0.25, dropping["seeds"].pop("5")
    (tmp_path / "dropping2.json").write_text(json.dumps(dropping))
    with pytest.raises(SystemExit, match="with token_drop 0.25"):
        growth.merge([tmp_path / "dropping.json", tmp_path / "dropping2.json"])
    other = seed_results(3, 5.0, 80)
    other["setup"]["steps"] = 99
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="different setup"):
        growth.merge([files[0], tmp_path / "other.json"])
    # a file from before --eval_batch_size evaluated with ligo's 64: it merges with 64, not 16
    other["setup"]["steps"] = 2
    for size, merges in ((64, True), (16, False)):
        other["setup"]["eval_batch_size"] = size
        (tmp_path / "other.json").write_text(json.dumps(other))
        if merges:
            assert growth.merge([files[0], tmp_path / "other.json"])["setup"]["eval_batch_size"] == 64
        else:
            with pytest.raises(SystemExit, match="different setup .*eval_batch_size"):
                growth.merge([files[0], tmp_path / "other.json"])
    # a file written before --grown_steps existed merges with one whose grown runs used --steps
    shortened = seed_results(4, 5.0, 80)
    shortened["setup"]["grown_steps"] = 2
    (tmp_path / "shortened.json").write_text(json.dumps(shortened))
    assert "schedule over" not in growth.markdown(growth.merge([files[0], tmp_path / "shortened.json"]))
    shortened["setup"]["grown_steps"] = 1
    (tmp_path / "shortened.json").write_text(json.dumps(shortened))
    with pytest.raises(SystemExit, match="different setup .*grown_steps"):
        growth.merge([files[0], tmp_path / "shortened.json"])
    alone = growth.merge([tmp_path / "shortened.json"])
    assert "after-growth LR 0.001 (warmup 1, schedule over 1 steps)" in growth.markdown(alone)
    # seeds tokenised differently are not one task (a retrained WordPiece can differ)
    for seed, digest in ((7, "aa"), (8, None), (9, "bb")):
        tokenised = seed_results(seed, 5.0, 80)
        tokenised["seeds"][str(seed)]["tokenizer_sha256"] = digest
        (tmp_path / f"tok{seed}.json").write_text(json.dumps(tokenised))
    assert growth.merge([tmp_path / "tok7.json", tmp_path / "tok8.json"])["setup"]["seeds"] == ["7", "8"]
    with pytest.raises(SystemExit, match="seed 9 .*another tokenizer than seed 7"):
        growth.merge([tmp_path / "tok7.json", tmp_path / "tok8.json", tmp_path / "tok9.json"])
    # stack without split shares (files from before the flag) is another recipe than with them
    split = seed_results(10, 5.0, 80)
    split["setup"]["width_split_noise"] = 0.1
    (tmp_path / "split.json").write_text(json.dumps(split))
    with pytest.raises(SystemExit, match="ran stack/interpolate/bert2bert/double with width_split_noise 0.1"):
        growth.merge([files[0], tmp_path / "split.json"])
    assert "copies split their shares (--width_split_noise 0.1)" in growth.markdown(
        growth.merge([tmp_path / "split.json"]))
    assert "copies equal (no --width_split_noise)" in growth.markdown(growth.merge([files[0]]))
    # the ligo_from_* rows' split is a setting of their own: files from before it read as 0
    from_rows = seed_results(11, 5.0, 80)
    from_rows["seeds"]["11"]["runs"]["ligo_from_bert2bert"] = from_rows["seeds"]["11"]["runs"]["stack"]
    from_rows["seeds"]["11"]["summary"] = growth.summarise(from_rows["seeds"]["11"]["runs"])
    (tmp_path / "from_equal.json").write_text(json.dumps(from_rows))
    from_rows["setup"]["from_operator_split_noise"] = 0.1
    from_rows["seeds"]["12"] = from_rows["seeds"].pop("11")
    (tmp_path / "from_split.json").write_text(json.dumps(from_rows))
    with pytest.raises(SystemExit, match="ran ligo_from_stack/ligo_from_bert2bert with from_operator_split_noise"):
        growth.merge([tmp_path / "from_equal.json", tmp_path / "from_split.json"])
    assert "ligo_from_* operators starting from the same split (0.1)" in growth.markdown(
        growth.merge([tmp_path / "from_split.json"]))
    assert "ligo_from_* operators starting from equal copies" in growth.markdown(
        growth.merge([tmp_path / "from_equal.json"]))
    assert "ligo_from_*" not in growth.markdown(growth.merge([files[0]]))  # no such row: nothing said


def test_the_mean_curve_stops_where_a_seed_stopped_and_each_seed_goes_on_thin():
    short = [{"step": s, "flops": s * 10, "loss": loss} for s, loss in ((100, 6.0), (200, 5.0))]
    long = [{"step": s, "flops": s * 10, "loss": loss} for s, loss in ((100, 6.2), (200, 5.8), (300, 5.6))]
    xs, ys, sds = growth._mean_curve([short, long], "flops")
    assert xs == [1000, 2000] and ys == pytest.approx([6.1, 5.4])
    assert sds[1] == pytest.approx((2 * 0.4 ** 2) ** 0.5)
    assert growth._tails([short, long], "flops") == [([2000, 3000], [5.8, 5.6])]


def test_ligo_steps_per_row_and_bad_values():
    steps = growth.parse_ligo_steps(["100", "ligo_from_bert2bert=25"])
    args = type("Args", (), {"ligo_steps": steps})
    assert growth.ligo_steps(args, "ligo") == 100 and growth.ligo_steps(args, "ligo_from_bert2bert") == 25
    assert growth.parse_ligo_steps(["ligo=7"]) == {"default": 100, "ligo": 7}
    for bad in ("stack=5", "ligo=0", "x"):
        with pytest.raises(SystemExit, match="error: --ligo_steps"):
            growth.parse_ligo_steps([bad])


def test_masking_rate_reaches_every_masked_lm_run_and_only_those():
    def args(preset, **flags):
        values = {"preset": preset, "train_files": ["corpus"], "cache_dir": "cache",
                  "eval_max_batches": 8, "bf16": "true", **flags}
        return type("Args", (), values)

    flags = growth.common_flags(args("bert", mlm_probability=0.25), seed=1)
    assert flags[flags.index("--mlm_probability") + 1] == "0.25"
    default = growth.common_flags(args("bert"), seed=1)
    assert default[default.index("--mlm_probability") + 1] == "0.4"  # the bert preset's
    paper = growth.common_flags(args("bert-paper"), seed=1)
    assert paper[paper.index("--mlm_probability") + 1] == "0.15"  # no rate in the preset
    assert "--mlm_probability" not in growth.common_flags(args("gpt2"), seed=1)
    with pytest.raises(SystemExit, match="error: --mlm_probability is for masked-LM presets"):
        growth.recipe(args("gpt2", mlm_probability=0.4))
    with pytest.raises(SystemExit, match=r"error: --mlm_probability 0.95 is outside \[0.01, 0.9\]"):
        growth.recipe(args("bert", mlm_probability=0.95))
    # a sweep file from before the flag was run at 15 %: extending it at 40 % is refused
    r = growth.recipe(args("bert"))
    before_the_flag = {"preset": "bert", "target": r["target"], "seed": 1, "steps": r["steps"],
                       "warmup_steps": r["warmup"], "runs": {}}
    with pytest.raises(SystemExit, match="another recipe"):
        growth.lr_sweep(args("bert", mlm_probability=0.4, position_init="random", workdir="unused"),
                        [1e-3], 1, before_the_flag)
    # ... and one from before --position_init had the family's random table
    before_the_flag["mlm_probability"] = 0.4
    with pytest.raises(SystemExit, match="another recipe"):
        growth.lr_sweep(args("bert", workdir="unused"), [1e-3], 1, before_the_flag)


def test_position_init_reaches_the_from_scratch_runs_only(tmp_path, monkeypatch):
    import ligo.pretrain

    seen = {}

    def fake_main(argv):
        out = Path(argv[argv.index("--output_dir") + 1])
        out.mkdir(parents=True, exist_ok=True)
        seen[out.name] = argv

    monkeypatch.setattr(ligo.pretrain, "main", fake_main)
    values = {"preset": "gpt2", "train_files": ["corpus"], "cache_dir": "cache", "eval_max_batches": 8,
              "bf16": "true", "position_init": "sinusoidal", "tokenizer_path": None}
    args = type("Args", (), values)
    for method in ("scratch", "small", "progressive", "pli", "staged", "stack", "bert2bert", "msg"):
        growth.run_method(method, args, tmp_path, tmp_path / "small", goal=5.0)
    for method, argv in seen.items():
        scratch = method in growth.FROM_SCRATCH
        assert ("--position_init" in argv) == scratch, method
        if scratch:
            assert argv[argv.index("--position_init") + 1] == "sinusoidal"
    assert growth.recipe(type("Args", (), {**values, "position_init": None}))["position_init"] == "random"
    seen.clear()
    growth.run_method("scratch", type("Args", (), {**values, "position_init": "random"}), tmp_path,
                      tmp_path / "small")
    assert "--position_init" not in seen["scratch"]  # the family's own init: no flag


def test_split_noise_reaches_the_rows_whose_width_copies_units_only():
    values = {"preset": "bert", "train_files": ["corpus"], "cache_dir": "cache", "eval_max_batches": 8,
              "bf16": "true", "position_init": None, "tokenizer_path": None, "width_split_noise": 0.1,
              "layer_drop": 0.5, "layer_drop_ramp_steps": 100, "token_drop": 0.5}
    args = type("Args", (), values)
    for method in growth.METHODS:
        argv = growth.method_argv(method, args, Path("work"), Path("work/small"))
        split = method in ("stack", "interpolate", "bert2bert", "double")
        assert ("--width_split_noise" in argv) == split, method
        if split:
            assert argv[argv.index("--width_split_noise") + 1] == "0.1"
    # the LiGO rows that start where a copying row starts start from the same split
    args.ligo_steps, args.ligo_learning_rate = {"default": 100}, 1e-3
    for init in growth.LIGO_INITS:
        argv = growth.operator_argv(args, 1, Path("work/op"), Path("work/small"), init)
        assert ("--width_split_noise" in argv) == (init in ("ligo_from_stack", "ligo_from_bert2bert")), init
    args.width_split_noise = 0.0
    assert "--width_split_noise" not in growth.method_argv("stack", args, Path("w"), Path("w/small"))
    assert "--width_split_noise" not in growth.operator_argv(args, 1, Path("o"), Path("s"), "ligo_from_stack")


def test_an_operator_made_by_another_command_is_made_again(tmp_path, monkeypatch):
    import ligo.grow_train
    import ligo.pretrain

    made = []

    def fake_grow(argv):
        out = Path(argv[argv.index("--output_dir") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "ligo_operator.pt").write_text("")
        made.append(argv)

    monkeypatch.setattr(ligo.grow_train, "main", fake_grow)
    monkeypatch.setattr(ligo.pretrain, "main", lambda argv: Path(argv[argv.index("--output_dir") + 1]).mkdir(
        parents=True, exist_ok=True))
    values = {"preset": "gpt2", "train_files": ["corpus"], "cache_dir": "cache", "eval_max_batches": 8,
              "bf16": "true", "position_init": None, "tokenizer_path": None, "width_split_noise": 0.5,
              "ligo_steps": {"default": 100}, "ligo_learning_rate": 1e-3}
    args = type("Args", (), values)
    growth.run_method("ligo_from_bert2bert", args, tmp_path, tmp_path / "small")
    growth.run_method("ligo_from_bert2bert", args, tmp_path, tmp_path / "small")
    assert len(made) == 1  # the same command: the operator is reused
    recorded = json.loads((tmp_path / "ligo_from_bert2bert_operator" / "bench_argv.json").read_text())
    assert recorded == made[0] and recorded[recorded.index("--width_split_noise") + 1] == "0.5"
    args.width_split_noise = 0.1
    growth.run_method("ligo_from_bert2bert", args, tmp_path, tmp_path / "small")
    assert len(made) == 2 and made[1][made[1].index("--width_split_noise") + 1] == "0.1"
    (tmp_path / "ligo_from_bert2bert_operator" / "bench_argv.json").unlink()  # made before the record
    growth.run_method("ligo_from_bert2bert", args, tmp_path, tmp_path / "small")
    assert len(made) == 2  # assumed the same


def test_a_finished_run_is_reused_only_if_its_recorded_command_is_this_one(tmp_path, monkeypatch):
    trained = []

    def fake_run(method, args, work, small_dir, goal=None, seed=42):
        trained.append(method)
        out = work / method
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"finished": True, "unigram_loss": 6.5}))
        (out / "metrics.jsonl").write_text(json.dumps(
            {"split": "eval", "step": 10, "tokens": 1, "flops": 1.0, "train_seconds": 1.0, "loss": 5.0})
            + "\n")
        argv = growth.method_argv(method, args, work, small_dir, goal, seed=seed)
        (out / "bench_argv.json").write_text(json.dumps(argv))
        return out

    monkeypatch.setattr(growth, "run_method", fake_run)
    values = {"preset": "bert", "train_files": ["corpus"], "cache_dir": "cache", "eval_max_batches": 8,
              "bf16": "true", "position_init": None, "tokenizer_path": None, "width_split_noise": 0.0,
              "workdir": str(tmp_path), "reuse_finished": True, "stop_at_goal": True, "glue": False,
              "ligo_steps": {"default": 100}, "ligo_learning_rate": 1e-3}
    args = type("Args", (), values)
    growth.run_seed(args, 1, ["scratch", "small", "stack"])
    args.width_split_noise = 0.1
    again = growth.run_seed(args, 1, ["scratch", "small", "stack"])
    assert trained == ["scratch", "small", "stack", "stack"]  # only stack's command changed
    assert again["reused_runs"] == ["scratch", "small"]
    # a LiGO row is reused only if its operator's recorded command is this one too
    work = tmp_path / "bert-seed1"
    operator = work / "ligo_operator"
    operator.mkdir()
    (operator / "bench_argv.json").write_text(json.dumps(growth.operator_argv(args, 1, operator, work / "small")))
    growth.run_seed(args, 1, ["scratch", "small", "ligo"])
    assert growth.run_seed(args, 1, ["scratch", "small", "ligo"])["reused_runs"] == ["scratch", "small", "ligo"]
    args.ligo_steps = {"default": 50}  # the operator's command changes, the grown run's does not
    assert growth.run_seed(args, 1, ["scratch", "small", "ligo"])["reused_runs"] == ["scratch", "small"]
    assert trained[-2:] == ["ligo", "ligo"]
    (tmp_path / "bert-seed1" / "scratch" / "bench_argv.json").unlink()  # a run from before the record
    assert growth.run_seed(args, 1, ["scratch"])["reused_runs"] == ["scratch"]


def test_lr_sweep_reuses_a_finished_run_only_when_asked(tmp_path, monkeypatch):
    trained = []

    def fake_run(method, args, work, small_dir, goal=None, seed=42, learning_rate=None, out=None):
        trained.append(learning_rate)
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps({"finished": True, "unigram_loss": 6.5}))
        (out / "metrics.jsonl").write_text(json.dumps(
            {"split": "eval", "step": 10, "tokens": 1, "flops": 1.0, "loss": 6.0 - learning_rate}) + "\n")
        return out

    monkeypatch.setattr(growth, "run_method", fake_run)
    values = {"preset": "gpt2", "train_files": ["corpus"], "cache_dir": "cache", "eval_max_batches": 8,
              "bf16": "true", "workdir": str(tmp_path), "argv": [], "reuse_finished": True}
    sweep = growth.lr_sweep(type("Args", (), values), [1e-3], seed=1)
    sweep = growth.lr_sweep(type("Args", (), values), [1e-3, 2e-3], seed=1)
    assert trained == [1e-3, 2e-3]  # the finished 1e-3 run was read, not trained again
    assert sweep["best_learning_rate"] == 2e-3 and set(sweep["final_loss"]) == {"0.001", "0.002"}
    values["reuse_finished"] = False
    with pytest.raises(FileExistsError):  # without the flag it trains afresh (here: into a used folder)
        growth.lr_sweep(type("Args", (), values), [1e-3], seed=1)


@pytest.mark.slow
def test_quick_benchmark_runs_every_method(tmp_path, shared_data):
    results = growth.main(["--quick", "--workdir", str(tmp_path / "work"),
                           "--train_files", str(shared_data / "corpus" / "wiki.txt")])
    runs = results["seeds"]["1"]["runs"]
    assert set(runs) == set(growth.METHODS)
    assert runs["ligo"]["results"]["growth_flops"] > 0
    assert runs["progressive"]["growth_at"]["flops"]  # a marker at the stage change
    # the drop rows reuse the ligo row's operator and compute less per step after growth

    def per_step(method):
        results = runs[method]["results"]
        return (results["flops"] - results["growth_flops"]) / results["step"]
    assert runs["ligo_token_drop"]["results"]["growth_flops"] == runs["ligo"]["results"]["growth_flops"]
    assert per_step("ligo_token_drop") < per_step("ligo") and per_step("ligo_layer_drop") < per_step("ligo")
    unigram = runs["scratch"]["results"]["unigram_loss"]
    assert all(p["below_unigram"] == pytest.approx(unigram - p["loss"]) for p in runs["stack"]["curve"])
    saved = json.loads((tmp_path / "work" / "growth_quick.json").read_text())
    assert saved["summary"]["methods"]["scratch"]["reuse_flops_savings"]["mean"] == 0.0
    # quick evaluations use small batches (2 x 64 blocks cost as much as the training steps)
    argv = json.loads((tmp_path / "work" / "bert-seed1" / "stack" / "bench_argv.json").read_text())
    assert argv[argv.index("--per_device_eval_batch_size") + 1] == "16"
    assert saved["setup"]["eval_batch_size"] == 16
    assert saved["summary"]["regime"] == "plateau"  # 24 steps of a tiny model learn nothing
    table = growth.markdown(saved)
    assert "| ligo |" in table and "| zero |" in table and "not for numbers" in table
    assert saved["not_for_numbers"] is True and "| scratch | 1 | 0.0 % | — |" in table
    # the operator runs log what they must beat: initialised from stack + bert2bert_fpi, the
    # operator starts exactly at that fixed operator's loss; from `rand` it does not
    operators = {m: json.loads((tmp_path / "work" / "bert-seed1" / f"{m}_operator" / "results.json")
                               .read_text()) for m in ("ligo", "ligo_from_stack")}
    from_stack = operators["ligo_from_stack"]
    assert from_stack["init_eval_loss"] == pytest.approx(from_stack["fixed_operator_eval_loss"], abs=1e-5)
    assert abs(operators["ligo"]["init_eval_loss"] - operators["ligo"]["fixed_operator_eval_loss"]) > 1e-3
    assert from_stack["source_eval_loss"] == operators["ligo"]["source_eval_loss"]
    assert all((tmp_path / "work" / f"growth_quick_loss_vs_{axis}.png").stat().st_size > 10_000
               for axis in ("flops", "seconds"))
    # every run of the seed tokenised with one tokenizer, whose digest the results record
    digests = {hashlib.sha256(p.read_bytes()).hexdigest()
               for p in (tmp_path / "work" / "bert-seed1").glob("*/tokenizer.json")}
    assert digests == {results["seeds"]["1"]["tokenizer_sha256"]}


@pytest.mark.slow
def test_quick_llama_benchmark_grows_it_with_ligo(tmp_path, shared_data):
    """The llama preset end to end on tiny sizes (4 query / 2 key-value heads -> 8 / 4): a
    LiGO operator trained by run_grow_distributed.py, then materialised and pretrained (the
    fixed operators on LLaMA: tests/operators/test_llama.py, tests/test_schedule.py)."""
    results = growth.main(["--preset", "llama", "--quick", "--methods", "ligo",
                           "--workdir", str(tmp_path / "work"),
                           "--train_files", str(shared_data / "corpus" / "wiki.txt")])
    runs = results["seeds"]["1"]["runs"]
    assert set(runs) == {"scratch", "small", "ligo"}
    assert runs["ligo"]["results"]["growth_flops"] > 0
    operator = json.loads((tmp_path / "work" / "llama-seed1" / "ligo_operator" / "results.json")
                          .read_text())
    assert operator["eval_loss"] < operator["init_eval_loss"]
    # an interrupted benchmark goes on: finished runs are kept and read back, not rerun
    (tmp_path / "work" / "llama-seed1" / "ligo" / "results.json").unlink()
    again = growth.main(["--preset", "llama", "--quick", "--methods", "ligo", "--reuse_finished",
                         "--workdir", str(tmp_path / "work"),
                         "--train_files", str(shared_data / "corpus" / "wiki.txt")])
    seed = again["seeds"]["1"]
    assert seed["reused_runs"] == ["scratch", "small"]
    assert seed["runs"]["scratch"]["curve"] == runs["scratch"]["curve"]
    losses = lambda run: [p["loss"] for p in run["curve"]]  # noqa: E731
    assert losses(seed["runs"]["ligo"]) == losses(runs["ligo"])  # rerun: deterministic


@pytest.mark.parametrize("content, message", [(None, "is not a file"), ("{oops", "is not JSON"),
                                               ('{"setup": {}}', 'has no "seeds"')])
def test_table_and_merge_refuse_a_file_that_is_not_a_results_file(tmp_path, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    merged = tmp_path / "m.json"
    for argv in (["--table", str(path)], ["--merge", str(path), str(path), "--output", str(merged)]):
        with pytest.raises(SystemExit) as exit_info:
            growth.main(argv)
        assert str(exit_info.value).startswith(f"error: {path} ") and message in str(exit_info.value)
    assert not merged.exists()


def test_merge_compares_operator_steps_only_for_the_ligo_rows_both_files_ran(tmp_path):
    def ligo_file(seed, steps, rows):
        results = seed_results(seed, 5.0, 80)
        runs = results["seeds"][str(seed)]["runs"]
        for row in rows:
            runs[row] = runs["stack"]
        results["setup"]["ligo_steps"] = steps
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(results))
        return path

    both = ligo_file(4, {"default": 100, "ligo_from_bert2bert": 25}, ["ligo", "ligo_from_bert2bert"])
    ligo_only = ligo_file(5, {"default": 100}, ["ligo"])
    merged = growth.merge([both, ligo_only])
    assert merged["setup"]["ligo_steps"] == {"default": 100, "ligo_from_bert2bert": 25}
    assert "LiGO 100 (ligo_from_bert2bert 25) operator steps" in growth.markdown(merged)
    # a row named by one file's steps but run by the other at the default is a different recipe
    other = ligo_file(6, {"default": 100}, ["ligo", "ligo_from_bert2bert"])
    with pytest.raises(SystemExit, match="ligo_from_bert2bert with 100 operator steps"):
        growth.merge([both, other])
    assert growth.merge([ligo_file(7, 100, ["ligo"]), ligo_only])["setup"]["ligo_steps"] == {"default": 100}


def test_the_ligo_rows_name_their_width_form_and_files_of_two_forms_do_not_merge(tmp_path):
    """Each LiGO operator's command names its width form (ligo's default, full, unless
    --ligo_width_form), so an operator of the other form is not reused; files from before the
    flag ran the structured form and merge only with files of that form."""
    from ligo.config import DataArguments, LiGOArguments, ModelArguments, TrainingArguments, parse_args

    values = {"preset": "gpt2", "train_files": ["corpus"], "cache_dir": "cache", "eval_max_batches": 8,
              "bf16": "true", "position_init": None, "tokenizer_path": None, "width_split_noise": 0.5,
              "ligo_steps": {"default": 100}, "ligo_learning_rate": 1e-3}

    def form(args, init="ligo") -> str:
        argv = growth.operator_argv(args, 1, tmp_path / "op", tmp_path / "small", init)
        groups = (ModelArguments, DataArguments, TrainingArguments, LiGOArguments)
        return parse_args(groups, argv)[3].options().width_form

    assert {form(type("Args", (), values), init) for init in growth.LIGO_INITS} == {"full"}
    assert LiGOArguments(source_model_path="small").width_form == "full"
    # ligo.config's torch-free copy of the forms (growth.py's choices) is the operator's own
    from ligo.config import LIGO_WIDTH_FORM, LIGO_WIDTH_FORMS
    from ligo.operators.learned import WIDTH_FORMS, LiGOOptions
    assert (LIGO_WIDTH_FORMS, LIGO_WIDTH_FORM) == (WIDTH_FORMS, LiGOOptions().width_form)
    assert form(type("Args", (), {**values, "ligo_width_form": "structured"})) == "structured"

    def ligo_file(seed, width_form, rows=("ligo",)):
        results = seed_results(seed, 5.0, 80)
        for row in rows:
            results["seeds"][str(seed)]["runs"][row] = results["seeds"][str(seed)]["runs"]["stack"]
        if width_form:
            results["setup"]["ligo_width_form"] = width_form
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(results))
        return path

    before_the_flag, full = ligo_file(4, None), ligo_file(5, "full")
    with pytest.raises(SystemExit, match="ligo_width_form full, .*seed4.json with structured"):
        growth.merge([before_the_flag, full])
    merged = growth.merge([ligo_file(6, None, rows=()), full])  # seed 6 ran no LiGO row
    assert merged["setup"]["ligo_width_form"] == "full"
    assert "operator steps of full width matrices" in growth.markdown(merged)
    assert "of structured width matrices" in growth.markdown(growth.merge([before_the_flag]))


def test_the_double_row_copies_at_random_where_the_target_is_no_exact_doubling():
    values = {"train_files": ["corpus"], "cache_dir": "cache", "eval_max_batches": 8, "bf16": "true",
              "position_init": None, "tokenizer_path": None, "width_split_noise": 0.0}
    widths = {}
    for preset in ("bert", "bert-paper"):  # 128 -> 256 hidden; 512 -> 768
        argv = growth.method_argv("double", type("Args", (), {**values, "preset": preset}), Path("w"),
                                  Path("w/small"))
        widths[preset] = argv[argv.index("--width_scheme") + 1]
    assert widths == {"bert": "double", "bert-paper": "net2net"}
