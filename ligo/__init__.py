"""ligo: grow small pretrained transformers into large ones.

    import ligo
    big = ligo.grow("out/bert-small", "configs/bert-6L-512H.json", depth="stack",
                    width="bert2bert_aki")            # a ready transformers model
    big = ligo.grow("out/bert-small", "configs/bert-12L-768H.json", depth="ligo",
                    operator="out/ligo-op")           # a trained LiGO operator, materialised
"""


def grow(small, large_config, *, depth: str = "stack", width: str | None = None,
         operator=None, positions: list[int] | None = None, insert_init: str = "copy",
         insert_noise_std: float = 0.01, width_noise_std: float = 0.0,
         width_split_noise: float = 0.0, seed: int = 0, small_config=None):
    """Grow `small` into a ready `transformers` model of `large_config`; every method the
    command lines reach (`python -m ligo.grow_model`, `--source_model_path`).

    small: an HF model, a folder holding one (or a run folder stopped before its final model:
        its newest valid checkpoint), or a state dict (then give `small_config`).
    large_config: a config object or a JSON path (configs/*.json).
    depth: stack, interpolate, insert, identity (new layers at `positions`, target indices;
        default on top; insert initialises them by `insert_init` copy, random or copy_noise
        with `insert_noise_std`; identity makes them exact no-ops), or ligo.
    width: net2net (with `width_noise_std`), bert2bert_fpi, bert2bert_aki, double, zero or
        random; None when the hidden size does not change. `width_split_noise` (net2net,
        bert2bert_fpi/aki, double): the copies of a unit share its outgoing weights in random
        proportions that still sum to the source's, so the model stays exact but the copies
        separate in training (without it, and without dropout, they stay twins).
    operator: depth="ligo": the output folder of run_grow_distributed.py. The operator holds
        its own width and depth maps (width must stay None); `small` must be the source it was
        trained from (its shapes are checked), and its weights are the operator's own copy.
    seed: the random choices of net2net/bert2bert and of fresh parameters.
    """
    from ligo.operators import grow as grow_with_scheme

    if isinstance(small, str) or hasattr(small, "__fspath__"):
        # a model folder, or a run stopped before its final model (its newest checkpoint)
        from ligo.train.checkpoint import read_source_model

        small_config, small = read_source_model(small)
    if depth == "ligo":
        if operator is None:
            raise ValueError("depth='ligo' needs operator=, the output folder of "
                             "run_grow_distributed.py")
        if width is not None or positions is not None:
            raise ValueError("depth='ligo': the operator holds its own width and depth maps; "
                             "drop width= and positions=")
        from ligo.models import load_config
        from ligo.operators.learned import load_operator, materialise

        if isinstance(large_config, str) or hasattr(large_config, "__fspath__"):
            large_config = load_config(large_config)
        source_config = _config_of(small, small_config)
        return materialise(load_operator(operator, source_config, large_config))
    if operator is not None:
        raise ValueError(f"operator= is for depth='ligo', not depth={depth!r}")
    return grow_with_scheme(
        small, large_config, depth=depth, width=width, small_config=small_config, seed=seed,
        depth_options={"positions": positions, "init": insert_init, "noise_std": insert_noise_std},
        width_options={"noise_std": width_noise_std, "split_noise": width_split_noise})


def _config_of(small, small_config):
    from ligo.models import load_config

    if isinstance(small, dict):
        if small_config is None:
            raise ValueError("growing a state dict needs its config: pass small_config=")
        return small_config
    if hasattr(small, "config"):
        return small.config
    return load_config(small)
