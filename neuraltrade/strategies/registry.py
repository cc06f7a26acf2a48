"""The strategies the platform has, by name, and how a strategy is built from parameters given as text.

``build_strategy("sma_cross", {"fast": "10", "slow": "30"})`` is what the CLI and the sweeps call: values
may be strings (as typed on a command line) or already numbers, and are converted to the type of the
configuration's field. An unknown strategy or parameter raises `UnknownStrategy` listing the valid
ones; a value of the wrong kind or out of range raises `ConfigError` naming it.

The names are known without importing any strategy (`STRATEGY_NAMES`): the command line lists them in its
help, which must not wait for pandas and every strategy module; a strategy's module is imported when it is
first built or looked up.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from neuraltrade.errors import ConfigError, UnknownStrategy

if TYPE_CHECKING:
    from neuraltrade.strategies.base import Strategy, StrategyConfig
    from neuraltrade.strategies.needs import StrategyContext

Parameter = str | float | int | bool | None

#: Every strategy by name: the module that defines it, its class and its configuration's class.
_CATALOGUE: dict[str, tuple[str, str, str]] = {
    "sma_cross": ("neuraltrade.strategies.sma_cross", "SmaCross", "SmaCrossConfig"),
    "mean_reversion": ("neuraltrade.strategies.mean_reversion", "MeanReversion", "MeanReversionConfig"),
    "momentum": ("neuraltrade.strategies.momentum", "Momentum", "MomentumConfig"),
    "neural": ("neuraltrade.strategies.neural", "Neural", "NeuralConfig"),
    "memory_vote": ("neuraltrade.strategies.memory_vote", "MemoryVote", "MemoryVoteConfig"),
}
#: The name of every strategy, sorted.
STRATEGY_NAMES: tuple[str, ...] = tuple(sorted(_CATALOGUE))


class _Strategies(Mapping[str, "tuple[type[Strategy], type[StrategyConfig]]"]):
    """Strategy name to (class, configuration class); a strategy's module is imported on first lookup."""

    def __init__(self) -> None:
        self._loaded: dict[str, tuple[type[Strategy], type[StrategyConfig]]] = {}

    def __getitem__(self, name: str) -> tuple[type[Strategy], type[StrategyConfig]]:
        if name not in self._loaded:
            module_name, class_name, config_name = _CATALOGUE[name]
            module = importlib.import_module(module_name)
            strategy_class, config_class = getattr(module, class_name), getattr(module, config_name)
            # The catalogue repeats each class's own name; a mismatch would file a strategy under another's.
            if strategy_class.name != name:
                raise ConfigError(f"strategy catalogue files {class_name} (named {strategy_class.name!r}) as {name!r}")
            self._loaded[name] = (strategy_class, config_class)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_CATALOGUE)

    def __len__(self) -> int:
        return len(_CATALOGUE)


#: Every strategy by name: its class and its configuration's class.
STRATEGIES: Mapping[str, tuple[type[Strategy], type[StrategyConfig]]] = _Strategies()

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}


def strategy_names() -> list[str]:
    """Return the names of every strategy, sorted."""
    return list(STRATEGY_NAMES)


def require_strategy(name: str, parameters: Iterable[str] = ()) -> None:
    """Check that strategy `name` exists and takes every one of `parameters` (names only, no values).

    Raises
    ------
    UnknownStrategy
        If it does not (the message lists the strategies, or the strategy's parameters).
    """
    _refuse_unknown_parameters(name, parameters, parameter_names(name))


def _refuse_unknown_parameters(name: str, given: Iterable[str], known: list[str]) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UnknownStrategy(
            f"strategy {name!r} has no parameter {', '.join(map(repr, unknown))}; its parameters are {', '.join(known)}"
        )


def parameter_names(name: str) -> list[str]:
    """Return the parameter names of strategy `name`, in the configuration's order (for ``gated:<base>``:
    the base's, then the gate's, each prefixed ``gate_``)."""
    if _is_gated(name):
        from neuraltrade.strategies.gated import GATE_PARAMETER_PREFIX, base_name

        gate = [item.name for item in dataclasses.fields(_entry(name)[1]) if item.name not in _GATE_FIXED]
        return parameter_names(base_name(name)) + [f"{GATE_PARAMETER_PREFIX}{key}" for key in gate]
    return [item.name for item in dataclasses.fields(_entry(name)[1])]


def build_config(name: str, params: Mapping[str, Parameter]) -> StrategyConfig:
    """Return strategy `name`'s configuration with `params` (text or values) over the defaults.

    Raises
    ------
    UnknownStrategy
        If the strategy or one of the parameters does not exist (the message lists the valid ones).
    ConfigError
        If a value cannot be read as its field's type, or the configuration refuses it.
    """
    config_class = _entry(name)[1]
    hints = _field_types(config_class)
    if _is_gated(name):
        from neuraltrade.strategies.gated import GatedConfig, base_name, split_parameters

        _refuse_unknown_parameters(name, params, parameter_names(name))
        base_values, gate_values = split_parameters(params)
        base = build_config(base_name(name), base_values)
        values = {key: _convert(name, f"gate_{key}", value, hints[key]) for key, value in gate_values.items()}
        return GatedConfig(base=base_name(name), base_parameters=base.to_plain(), **values)
    _refuse_unknown_parameters(name, params, [item.name for item in dataclasses.fields(config_class)])
    values = {key: _convert(name, key, value, hints[key]) for key, value in params.items()}
    return config_class(**values)


def build_strategy(
    name: str,
    params: Mapping[str, Parameter] | None = None,
    *,
    context: StrategyContext | None = None,
    symbols: Sequence[str] = (),
) -> Strategy:
    """Return strategy `name` configured with `params` (see `build_config`), its needs filled from `context`.

    A strategy that needs more than bars (`Strategy.needs`, e.g. ``memory_vote`` a vector memory) takes
    it from `context`, for the `symbols` it will run on (empty: any); the strategy keeps what it was given
    (`Strategy.supplies`). Strategies that need nothing ignore `context`.

    Raises
    ------
    UnknownStrategy
        If the strategy or one of the parameters does not exist.
    ConfigError
        If a value is refused, or the strategy needs something and no `context` is given.
    """
    from neuraltrade.strategies.needs import supply

    if _is_gated(name):
        return _build_gated(name, params or {}, context=context, symbols=symbols)
    config = build_config(name, params or {})
    strategy_class = _entry(name)[0]
    supplies = supply(name, strategy_class.needs, context, symbols)
    strategy = strategy_class.from_supplies(config, supplies)
    strategy.supplies = supplies
    return strategy


_FIELD_TYPES: dict[type[StrategyConfig], dict[str, Any]] = {}


def _field_types(config_class: type[StrategyConfig]) -> dict[str, Any]:
    """The resolved field types of `config_class` (resolving them compiles annotations: once per class)."""
    if config_class not in _FIELD_TYPES:
        _FIELD_TYPES[config_class] = typing.get_type_hints(config_class)
    return _FIELD_TYPES[config_class]


def _entry(name: str) -> tuple[type[Strategy], type[StrategyConfig]]:
    if _is_gated(name):
        from neuraltrade.strategies.gated import GatedConfig, base_name, gated_class

        if _is_gated(base_name(name)):
            raise UnknownStrategy(f"no strategy {name!r}: a gated strategy gates a base strategy, not a gated one")
        _entry(base_name(name))
        return gated_class(base_name(name)), GatedConfig
    if name not in _CATALOGUE:
        raise UnknownStrategy(
            f"no strategy {name!r}; the strategies are {', '.join(STRATEGY_NAMES)}, each also gated by the "
            "learning memory as gated:NAME"
        )
    return STRATEGIES[name]


#: Fields of a gated strategy's configuration that are not gate parameters (they name the base).
_GATE_FIXED = frozenset({"base", "base_parameters"})


def _is_gated(name: str) -> bool:
    return name.startswith("gated:") and name != "gated:"


def _build_gated(
    name: str, params: Mapping[str, Parameter], *, context: StrategyContext | None, symbols: Sequence[str]
) -> Strategy:
    """Build ``gated:<base>``: the base with its own needs filled, and the learning memory of the base."""
    from neuraltrade.strategies.gated import GatedConfig, base_name, gated_class, split_parameters
    from neuraltrade.strategies.needs import Supplies

    config = build_config(name, params)
    assert isinstance(config, GatedConfig)
    base_values, _ = split_parameters(params)
    base = build_strategy(base_name(name), base_values, context=context, symbols=symbols)
    if context is None:
        raise ConfigError(
            f"strategy {name!r} needs learning_memory; build it with a context that supplies it (context=)"
        )
    learning = context.learning_memory(base.strategy_id)
    strategy = gated_class(base_name(name))(config, base, learning.memory)
    strategy.supplies = Supplies(memory=base.supplies.memory, learning=learning)
    return strategy


def _convert(strategy: str, name: str, value: Parameter, hint: Any) -> Any:
    """Return `value` as the field type `hint` (int, float, str, bool, or one of them or None)."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in kinds
    kinds = tuple(kind for kind in kinds if kind is not type(None))
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    for kind in kinds:
        converted = _as_kind(value, kind)
        if converted is not None:
            return converted
    wanted = " or ".join(kind.__name__ for kind in kinds) + (" or none" if optional else "")
    raise ConfigError(f"{strategy} parameter {name} must be {wanted}, was {value!r}")


def _as_kind(value: Parameter, kind: type) -> Any:
    """Return `value` as `kind`, or None if it is not one (no silent truncation of 2.5 to 2)."""
    text = value.strip() if isinstance(value, str) else None
    if kind is bool:
        if isinstance(value, bool):
            return value
        lowered = (text or "").lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else None
    if kind is int:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value) if value.is_integer() else None
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None
    if kind is float:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return float(value)
        try:
            number = float(text) if text is not None else None
        except ValueError:
            return None
        return number if number is not None and math.isfinite(number) else None
    if kind is str:
        return value if isinstance(value, str) else None
    return None
