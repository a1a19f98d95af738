"""Staged training's automatic schedule (Shen et al. 2022, "Staged Training for Transformer
Language Models", allenai/staged-training): the slope rule and its command line.

Grow when the slope of log(smoothed training loss) against log(compute) rises above
SLOPE_THRESHOLDS[what] before growing `what` (depth, width or both), and stop when it rises
above STOP_SLOPE after the last growth; the LR schedule then restarts at the
compute-equivalent step, the current step divided by RESTART_CONSTANTS[what]. The paper's
constants live here and only here.

    python -m ligo.slope RUN_DIR --next depth    # when would the rule grow this run?
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SLOPE_THRESHOLDS = {"depth": -0.0575, "width": -0.0475, "both": -0.0575}
STOP_SLOPE = -0.052
RESTART_CONSTANTS = {"depth": 1.412, "width": 1.776, "both": 2.455}
# the paper's LR heuristic for a model of N non-embedding parameters: A - B log(N)
AUTO_LR_INTERCEPT, AUTO_LR_SLOPE = 0.003239, 0.0001395


def auto_learning_rate(non_embedding_params: int) -> float:
    """Staged training's LR heuristic: AUTO_LR_INTERCEPT - AUTO_LR_SLOPE * log(N)."""
    return AUTO_LR_INTERCEPT - AUTO_LR_SLOPE * math.log(non_embedding_params)


def restart_position(step: int, what: str) -> int:
    """The compute-equivalent step at which the LR schedule restarts after growing `what`."""
    return round(step / RESTART_CONSTANTS[what])


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Tensorboard's debiased exponential moving average."""
    out, last, norm = np.empty(len(values)), 0.0, 0.0
    for i, value in enumerate(values):  # a few hundred logged points, not tokens
        last = weight * last + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def loglog_slope(compute: np.ndarray, loss: np.ndarray, window: float = 0.5) -> float | None:
    """Least-squares slope of log(loss) against log(compute) over the last points whose
    compute lies within a factor `1 / (1 - window)`... i.e. the last `window` of log-compute
    range ending at the newest point. None with fewer than 3 points."""
    compute, loss = np.asarray(compute, float), np.asarray(loss, float)
    keep = (compute > 0) & (loss > 0)
    compute, loss = compute[keep], loss[keep]
    if len(compute) < 3:
        return None
    x, y = np.log(compute), np.log(loss)
    chosen = x >= x[-1] - window * (x[-1] - x[0])
    if chosen.sum() < 3:
        chosen[-3:] = True
    return float(np.polyfit(x[chosen], y[chosen], 1)[0])


@dataclass
class SlopeRule:
    """Fires the next growth of `order` when the smoothed log-log slope rises above its
    threshold; after the last growth, says stop above STOP_SLOPE.

    The rule is the paper's "the curve has flattened": a slope above the threshold counts only
    once the current model's curve has been steeper than it (`armed`). At the start of a run
    the loss sits near its initial value before it falls, a flat stretch whose slope is above
    every threshold; without this guard a short run grew there (bert-tiny, step 14 of 80)."""

    order: list[str]
    smoothing: float = 0.9
    window: float = 0.5
    min_points: int = 10
    history: list[tuple[float, float]] = field(default_factory=list)  # (flops, loss) logged
    since: int = 0  # history index where the current model's curve starts
    armed: bool = False  # the current curve has been steeper than the next threshold

    def observe(self, flops: float, loss: float) -> None:
        self.history.append((flops, loss))

    def slope(self) -> float | None:
        points = np.array(self.history[self.since:], dtype=float)
        if len(points) < self.min_points:
            return None
        return loglog_slope(points[:, 0], smooth(points[:, 1], self.smoothing), self.window)

    def decide(self, done: int) -> str | None:
        """'depth' / 'width' / 'both' (grow), 'stop', or None."""
        slope = self.slope()
        if slope is None:
            return None
        threshold = SLOPE_THRESHOLDS[self.order[done]] if done < len(self.order) else STOP_SLOPE
        if slope <= threshold:
            self.armed = True
            return None
        if not self.armed:
            return None
        return self.order[done] if done < len(self.order) else "stop"


# ---------------------------------------------------------------- the command line
def when_to_grow(history: list[tuple[int, float, float]], order: list[str],
                 smoothing: float = 0.9, window: float = 0.5) -> dict:
    """Replay the slope rule over a logged run: [(step, flops, loss)] -> the step at which
    each threshold is first crossed, the slope there and the restart position."""
    rule = SlopeRule(order, smoothing, window)
    report = {"slopes": []}
    for step, flops, loss in history:
        rule.observe(flops, loss)
        slope = rule.slope()
        report["slopes"].append((step, slope))
        decision = rule.decide(0) if slope is not None else None
        if decision is None:
            continue
        key = "stop" if decision == "stop" else f"grow_{decision}"
        report[key] = {"step": step, "flops": flops, "slope": slope}
        if decision != "stop":
            report[key]["restart_step"] = restart_position(step, decision)
        break  # a later decision depends on the grown model's own curve
    return report


def main(argv: list[str] | None = None) -> dict:
    """python -m ligo.slope RUN_DIR: when the automatic schedule would grow this run."""
    import argparse
    from pathlib import Path

    from ligo.train.events import read_scalars

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("run_dir", help="a run's output_dir (or its tensorboard folder)")
    parser.add_argument("--next", default="depth", choices=("depth", "width", "both", "stop"),
                        help="which decision is next: a growth, or stop after the last one")
    parser.add_argument("--after_step", type=int, default=0,
                        help="ignore the curve up to this step (the warmup, as the run does)")
    parser.add_argument("--slope_smoothing", type=float, default=0.9)
    parser.add_argument("--slope_window", type=float, default=0.5)
    args = parser.parse_args(argv)
    folder = Path(args.run_dir)
    if (folder / "tensorboard").is_dir():
        folder = folder / "tensorboard"
    scalars = read_scalars(folder) if folder.is_dir() else {}
    if "train/loss" not in scalars or "train/flops" not in scalars:
        raise FileNotFoundError(f"no train/loss and train/flops scalars under {folder}")
    flops = dict(scalars["train/flops"])
    history = [(step, flops[step], loss) for step, loss in scalars["train/loss"]
               if step in flops and step > args.after_step]
    order = [] if args.next == "stop" else [args.next]
    report = when_to_grow(history, order, args.slope_smoothing, args.slope_window)
    last = next((s for s in reversed(report["slopes"]) if s[1] is not None), None)
    threshold = STOP_SLOPE if args.next == "stop" else SLOPE_THRESHOLDS[args.next]
    print(f"{len(history)} logged points; latest slope of log(loss) vs log(FLOPs): "
          f"{last[1]:.4f} at step {last[0]}" if last else "too few points for a slope yet")
    found = report.get("stop" if args.next == "stop" else f"grow_{args.next}")
    if found:
        extra = (f"; restart the LR schedule at step {found['restart_step']}"
                 if "restart_step" in found else "")
        print(f"{'stop' if args.next == 'stop' else 'grow ' + args.next} at step {found['step']} "
              f"({found['flops']:.3g} FLOPs, slope {found['slope']:.4f} > {threshold}){extra}")
    else:
        print(f"not yet: the slope has not risen above {threshold}")
    return report


if __name__ == "__main__":
    from ligo.cli import run

    run(main)
