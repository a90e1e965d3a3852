"""Dashboard JSON checked against the grafana-foundation-sdk's own Python types.

Why: no maintained Grafana dashboard schema ships in a package we can install, but the SDK's
models are generated from Grafana's own CUE definitions. A dashboard that the SDK decodes
(``Dashboard.from_json``) and encodes back unchanged uses no field the models do not know; a
walk over the decoded objects then checks every value against its field's type annotation
(numbers, strings, enums, lists, nested models), which ``from_json`` itself does not.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

_MODELS = "grafana_foundation_sdk.models"
_SCALARS: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def decode(data: dict[str, Any]) -> Dashboard:
    """The SDK's typed model of a dashboard's JSON (panel options and queries included)."""
    register_default_plugins()  # idempotent: lets panels and queries decode to their own types
    return Dashboard.from_json(data)


def round_trip_differences(data: Any, back: Any, path: str = "") -> list[str]:
    """Where the SDK's re-encoding differs from the original: fields it dropped, added or changed."""
    if isinstance(data, dict) and isinstance(back, dict):
        out = []
        for key in sorted(data.keys() | back.keys()):
            here = f"{path}/{key}"
            if key not in back:
                out.append(f"{here}: not a field of the SDK's model (dropped)")
            elif key not in data:
                out.append(f"{here}: missing (the SDK adds {back[key]!r})")
            else:
                out += round_trip_differences(data[key], back[key], here)
        return out
    if isinstance(data, list) and isinstance(back, list):
        if len(data) != len(back):
            return [f"{path}: {len(data)} items became {len(back)}"]
        return [
            p
            for i, (a, b) in enumerate(zip(data, back, strict=True))
            for p in round_trip_differences(a, b, f"{path}/{i}")
        ]
    if data != back or type(data) is not type(back):
        return [f"{path}: {data!r} became {back!r}"]
    return []


def type_problems(value: Any, hint: Any, path: str) -> list[str]:
    """Every place where a decoded value does not have its field's annotated type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        # Panel options and custom field config are `Any` in the model; decoded, they are typed.
        module = type(value).__module__
        return type_problems(value, type(value), path) if module.startswith(_MODELS) else []
    if hint is type(None):
        return [] if value is None else [f"{path}: {value!r} should be null"]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return []
        for option in options:  # a decoded model picks its own branch
            if _is_model(option) and isinstance(value, option):
                return type_problems(value, option, path)
        tries = [type_problems(value, option, path) for option in options]
        return [] if any(not t for t in tries) else tries[0]
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {list(args)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {value!r} should be a list"]
        item = args[0] if args else Any
        return [p for i, v in enumerate(value) for p in type_problems(v, item, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {value!r} should be an object"]
        item = args[1] if args else Any
        return [p for k, v in value.items() for p in type_problems(v, item, f"{path}.{k}")]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [m.value for m in hint]
        return [] if value in allowed else [f"{path}: {value!r} is not one of {allowed}"]
    if hint in _SCALARS:
        ok = isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
        if hint is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} should be {_SCALARS[hint]}"]
    if _is_model(hint):
        if isinstance(value, dict) and hasattr(hint, "from_json"):
            # A field the SDK's from_json passes through raw (e.g. transformations): decode it here.
            decoded = hint.from_json(value)
            back = json.loads(json.dumps(decoded, cls=JSONEncoder))
            return round_trip_differences(value, back, path) + type_problems(decoded, hint, path)
        if not isinstance(value, hint):
            return [f"{path}: {value!r} should be a {hint.__name__}"]
        return [
            p
            for name, field_hint in typing.get_type_hints(type(value)).items()
            for p in type_problems(getattr(value, name, None), field_hint, f"{path}.{name}")
        ]
    return [f"{path}: no rule for the annotation {hint!r}"]


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and not issubclass(hint, enum.Enum) and hint not in _SCALARS


def problems(data: dict[str, Any]) -> list[str]:
    """All that the SDK's types say is wrong with a dashboard's JSON (empty: it conforms)."""
    board = decode(data)
    back = json.loads(json.dumps(board, cls=JSONEncoder))
    out = round_trip_differences(data, back)
    for panel in board.panels or []:
        if isinstance(panel, Panel):
            out += _decoded_as_kind(panel)
    return out + type_problems(board, Dashboard, "dashboard")


def _decoded_as_kind(panel: Panel) -> list[str]:
    """A panel of a kind the SDK does not know keeps raw options: nothing would be checked."""
    out = []
    if panel.options is not None and isinstance(panel.options, dict):
        out.append(f"panel {panel.title!r}: the SDK knows no panel kind {panel.type_val!r}")
    for target in panel.targets or []:
        if isinstance(target, UnknownDataquery):
            out.append(f"panel {panel.title!r}: a query of a datasource type the SDK does not know")
    return out
