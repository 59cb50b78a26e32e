"""Contracts: what an implementation promises to accept, and what it promises to reject.

A law (:class:`dropblock.Profile`) says how an implementation drops; a contract says which calls it serves at
all. It is written as a string of comma-separated items::

    even_block=reject,oversize=reject,zero_prob=reject,square_only,dims=2,dtypes=float32+float64,raises=AssertionError

=================  =====================================================================================
item               meaning
=================  =====================================================================================
``even_block``     ``accept`` (default) or ``reject``: even block sizes
``oversize``       ``accept`` (default) or ``reject``: a block side larger than a map side
``zero_prob``      ``accept`` (default) or ``reject``: ``drop_prob = 0`` in training mode
``square_only``    only square maps (``H == W``, and ``D == H == W`` in 3D) are served; the checks choose
                   square maps (``square_only=false`` undoes it)
``dims``           the spatial dimensions served, ``2``, ``3`` or ``2+3``
``dtypes``         the floating dtypes served, e.g. ``float32+float64``
``raises``         the exception types a rejection raises (default ``ValueError``), e.g.
                   ``AssertionError+ValueError``; they also count for the argument checks of T0
=================  =====================================================================================

A contract comes from, in this order: ``dropblock-verify run --contract``; the ``contract`` key of
``[tool.dropblock-conformance]`` in ``./pyproject.toml`` (the same string, or a table of the same items); the
attribute ``dropblock_contract`` of the implementation (a string or a dict). It only narrows what the checks
ask: every declared rejection is itself checked by ``T0.rejections`` (the call must raise one of the
declared types, with a message), never trusted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .planning import DTYPES as ALL_DTYPES

__all__ = ["Contract", "ContractError", "parse_contract", "contract_from_mapping", "contract_from_pyproject",
           "contract_of", "apply_contract", "rejected_cleanly", "CONTRACT_ATTRIBUTE"]

#: The attribute an implementation may carry to declare its contract.
CONTRACT_ATTRIBUTE = "dropblock_contract"
_POLICY = ("accept", "reject")
_KEYS = ("even_block", "oversize", "zero_prob", "square_only", "dims", "dtypes", "raises")


class ContractError(ValueError):
    """A malformed contract; the one-line message names the bad item."""


@dataclass(frozen=True)
class Contract:
    """A parsed contract; ``None`` fields leave the adapter's own capabilities as they are."""

    even_block: str | None = None
    oversize: str | None = None
    zero_prob: str | None = None
    square_only: bool | None = None
    dims: tuple[int, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    raises: tuple[str, ...] | None = None

    def to_string(self) -> str:
        """The contract as a string :func:`parse_contract` reads back."""
        items = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                items.append(f.name if value else f"{f.name}=false")
            elif isinstance(value, tuple):
                items.append(f"{f.name}={'+'.join(map(str, value))}")
            else:
                items.append(f"{f.name}={value}")
        return ",".join(items)


def _policy(key: str, value: str) -> str:
    if value not in _POLICY:
        raise ContractError(f"contract item {key}={value!r}: use {key}=accept or {key}=reject")
    return value


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", ""):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ContractError(f"contract item {key}={value!r} is not true or false")


def _parts(key: str, value: Any) -> list[str]:
    parts = [str(v).strip() for v in value] if isinstance(value, (list, tuple)) else str(value).split("+")
    parts = [p.strip() for p in parts]
    if not parts or not all(parts):
        raise ContractError(f"contract item {key}={value!r} has an empty part")
    return parts


def contract_from_mapping(values: dict[str, Any], where: str = "contract") -> Contract:
    """A :class:`Contract` from ``{item: value}`` (strings, or TOML's bools and lists).

    Raises
    ------
    ContractError
        Unknown item, bad policy, dimension or dtype, or an exception name that is not an identifier.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _KEYS:
            raise ContractError(f"unknown contract item {key!r} in {where}; items are {', '.join(_KEYS)}")
        if key in ("even_block", "oversize", "zero_prob"):
            out[key] = _policy(key, str(value).strip())
        elif key == "square_only":
            out[key] = _bool(key, value)
        elif key == "dims":
            dims = _parts(key, value)
            if not all(d in ("2", "3") for d in dims):
                raise ContractError(f"contract item dims={value!r}: use 2, 3 or 2+3")
            out[key] = tuple(sorted({int(d) for d in dims}))
        elif key == "dtypes":
            dtypes = _parts(key, value)
            bad = [d for d in dtypes if d not in ALL_DTYPES]
            if bad:
                raise ContractError(f"contract item dtypes: unknown dtype {bad[0]!r}; use {', '.join(ALL_DTYPES)}")
            out[key] = tuple(dtypes)
        else:
            names = _parts(key, value)
            bad = [n for n in names if not n.replace(".", "_").isidentifier()]
            if bad:
                raise ContractError(f"contract item raises: {bad[0]!r} is not an exception name")
            out[key] = tuple(names)
    return Contract(**out)


def parse_contract(text: str) -> Contract:
    """Parse a contract string (see the module docstring); :class:`ContractError` names the bad item."""
    if not isinstance(text, str):
        raise ContractError(f"a contract is a string, got {type(text).__name__}")
    values: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            raise ContractError(f"empty item in contract {text!r}")
        key, eq, value = item.partition("=")
        key = key.strip()
        if key in values:
            raise ContractError(f"contract item {key!r} is given twice in {text!r}")
        if not eq and key != "square_only":
            raise ContractError(f"contract item {item!r} in {text!r} is not name=value")
        values[key] = value.strip()
    return contract_from_mapping(values, where=repr(text))


def contract_from_pyproject(folder: str = ".") -> str | None:
    """The ``contract`` of ``[tool.dropblock-conformance]`` in ``folder/pyproject.toml`` as a contract string,
    or None. :class:`ContractError` for an unreadable file or a malformed contract."""
    from .pyproject import tool_table

    path, table = tool_table(folder, ContractError)
    value = table.get("contract")
    if value is None:
        return None
    where = f"{path} [tool.dropblock-conformance] contract"
    if isinstance(value, str):
        return parse_contract(value).to_string()
    if isinstance(value, dict):
        return contract_from_mapping(value, where=where).to_string()
    raise ContractError(f"{where} must be a string or a table, got {value!r}")


def contract_of(target: Any) -> Contract | None:
    """The contract an implementation declares through its ``dropblock_contract`` attribute, or None."""
    value = getattr(target, CONTRACT_ATTRIBUTE, None)
    if value is None:
        return None
    where = f"{getattr(target, '__name__', type(target).__name__)}.{CONTRACT_ATTRIBUTE}"
    if isinstance(value, str):
        return parse_contract(value)
    if isinstance(value, dict):
        return contract_from_mapping(value, where=where)
    raise ContractError(f"{where} must be a contract string or a dict, got {type(value).__name__}")


def apply_contract(caps: Any, contract: Contract | str | None) -> Any:
    """``caps`` (:class:`~verification.adapters.Capabilities`) narrowed or widened by ``contract`` (fields the
    contract leaves out stay as they are)."""
    if contract is None:
        return caps
    c = parse_contract(contract) if isinstance(contract, str) else contract
    changes: dict[str, Any] = {}
    for name, field in (("even_block", "even_block"), ("oversize", "oversize_block"), ("zero_prob", "zero_prob")):
        value = getattr(c, name)
        if value is not None:
            changes[field] = value == "accept"
    for name in ("square_only", "dims", "dtypes"):
        if getattr(c, name) is not None:
            changes[name] = getattr(c, name)
    if c.raises is not None:
        changes["rejects"] = c.raises
    return dataclasses.replace(caps, **changes)


def rejected_cleanly(exc: BaseException, names: tuple[str, ...]) -> bool:
    """Whether ``exc`` is one of the exception types ``names`` (a class name, or ``module.Class``, of the
    exception's type or of one of its bases)."""
    return any(cls.__name__ in names or f"{cls.__module__}.{cls.__qualname__}" in names
               for cls in type(exc).__mro__)
