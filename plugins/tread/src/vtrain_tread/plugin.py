"""vtrain-tread: TREAD token routing (arXiv 2501.04765) during training, family-agnostic.

The plugin knows no model family: it needs the family to offer :class:`vtrain.family.TokenRouting`
(``ltxvideo`` and ``ltx2`` do); ``tread_config`` with a family lacking it is refused when the config is
read. Hooks, in run order:

- ``validate_config``: the family's capability and the shape of ``tread_config``;
- ``load_model`` (wrapper): resolves the routes against the loaded model's block count (negative
  indices, ranges, overlaps; refused with the route and the fix) and hooks the blocks;
- ``compute_loss`` (wrapper): routes the training forward inside it (gradients on, model in training
  mode: never validation, never the evaluation loss) and logs ``tread_token_share``;
- ``on_step_end``: drops tensors a recomputation left between a block's hooks.

Module-level imports stay light: torch is imported inside the hooks.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from vtrain.hookspecs import hookimpl
from vtrain_tread.settings import KEY, is_set

META_KEY = "tread"  # bundle.meta[META_KEY] holds the TokenRouter
CAPABILITY = ("token_routing_blocks", "block_tokens", "subset_block_inputs", "replace_block_tokens")


@hookimpl
def add_options(registry: Any) -> None:
    registry.add(
        KEY, "json", None,
        "TREAD token routing (SimpleTuner's key and shape): during training a share of the tokens skips a span of "
        "transformer blocks and rejoins after it. An object, a JSON string or a JSON file: "
        '{"routes": [{"selection_ratio": 0.5, "start_layer_idx": 2, "end_layer_idx": -2}]}; selection_ratio is '
        "the share that skips (in [0, 1)), both indices are routed, negative ones count from the last block. "
        "Validation and the evaluation loss are never routed. See docs/tread.md.",
        category="tread")


@hookimpl
def validate_config(config: Any, family: Any, problems: Any) -> None:
    if not is_set(config.tread_config):
        return
    from vtrain_tread.settings import TreadConfigError, parse

    missing = [name for name in CAPABILITY if not callable(getattr(family, name, None))]
    if missing:
        problems.add(KEY, f"TREAD (plugin tread) routes tokens through the model family's blocks, and the "
                          f"{family.name!r} family does not offer token routing (vtrain.family.TokenRouting: "
                          f"{', '.join(missing)})",
                     "remove tread_config, or train a family that supports it (ltxvideo, ltx2)")
        return
    try:
        parse(config.tread_config)
    except TreadConfigError as exc:
        problems.add(KEY, exc.message, exc.fix)


@hookimpl(wrapper=True)
def load_model(config: Any, family: Any) -> Generator[None, Any, Any]:
    bundle = yield
    if bundle is not None and is_set(config.tread_config):
        from vtrain.errors import ConfigError, Problem
        from vtrain_tread.router import TokenRouter
        from vtrain_tread.settings import TreadConfigError, parse, resolve

        blocks = family.token_routing_blocks(bundle)
        try:
            routes = resolve(parse(config.tread_config), len(blocks))
        except TreadConfigError as exc:
            raise ConfigError([Problem(f"{config.source(KEY)}: {KEY}", exc.message, exc.fix)]) from None
        router = TokenRouter(family, routes)
        router.install(bundle.model, blocks)
        bundle.meta[META_KEY] = router
    return bundle


@hookimpl(wrapper=True)
def compute_loss(bundle: Any, batch: dict[str, Any], config: Any, state: Any) -> Generator[None, Any, Any]:
    router = bundle.meta.get(META_KEY) if is_set(config.tread_config) else None
    if router is None:
        return (yield)
    with router.training_forward():
        out = yield
    share = router.token_share()
    if share is not None and out is not None:
        out.metrics["tread_token_share"] = share
    return out


@hookimpl
def on_step_end(run: Any) -> None:
    bundle = run.bundle
    router = bundle.meta.get(META_KEY) if bundle is not None else None
    if router is not None:
        router.release()


@hookimpl
def describe_run(run: Any) -> list[str] | None:
    bundle = run.bundle
    router = bundle.meta.get(META_KEY) if bundle is not None else None
    if router is None:
        return None
    spans = ", ".join(f"{route.selection_ratio:.0%} of the tokens skip blocks {route.start}-{route.end}"
                      for route in router.routes)
    return [f"TREAD: {spans} (of {len(router.family.token_routing_blocks(bundle))}; training forwards only)"]
