"""The one registry implementation behind every extension point of hao.

Each extension point owns one :class:`Registry`: search spaces (``hao.space``), solvers (``hao.search``),
objectives (``hao.search.objectives``), latency backends and table importers (``hao.latency``) and accuracy
models (``hao.proxy``). A registry maps a name to a class or factory, creates objects by name, and behaves the
same everywhere:

* names are non-empty strings without white space; registering a second, different object under a taken name
  raises (``overwrite=True`` replaces it);
* an unknown name raises :class:`~hao.errors.ConfigError` listing the known names and how to add one;
* ``create(name, **params)`` turns a ``TypeError`` from the constructor (a misspelt or missing parameter) into a
  :class:`~hao.errors.ConfigError` naming the parameters and the accepted ones;
* built-ins are registered lazily, on the first look-up, by importing the modules listed in ``builtins`` (the
  way optuna's packages register their samplers), and a ``loader`` callable may discover more (the space
  registry imports ``search_spaces/``, ``$HAO_SEARCH_SPACES`` and entry points that way);
* plug-ins: every entry point of the registry's ``entry_points`` group (e.g. ``hao.table_importers``) of an
  installed package is loaded on the first look-up and registered under the entry point's name (a broken plug-in
  is a warning, never an error), and :meth:`Registry.load_plugin` registers ``"module:Class"`` given by hand.

A registered class gets its registry name as the class attribute ``name`` (when ``set_name`` is true).
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hao.errors import ConfigError

__all__ = ["Registry", "Entry", "accepted_parameters"]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered object: its ``name``, the class or factory (``obj``) and free-form ``info``."""

    name: str
    obj: Any
    info: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:  # entry.family, entry.description ... from info
        info = object.__getattribute__(self, "info")
        if key in info:
            return info[key]
        raise AttributeError(key)

    @property
    def factory(self) -> Any:
        return self.obj


class Registry(Generic[T]):
    """Name → class or factory for one extension point (see the module docstring).

    Args:
        kind: what is registered, for messages (``"solver"``, ``"latency backend"`` ...).
        base: registered classes must subclass it (``None``: any callable, e.g. a factory function).
        builtins: modules imported on the first look-up; their decorators register the built-ins.
        loader: called once on the first look-up, after ``builtins`` (discovery of plug-ins).
        hint: how to add one, appended to the unknown-name error (point to the docs).
        set_name: set ``cls.name = name`` on registered classes.
    """

    def __init__(self, kind: str, *, base: type | None = None, builtins: Sequence[str] = (),
                 loader: Callable[[], None] | None = None, hint: str = "", set_name: bool = True,
                 entry_points: str | None = None) -> None:
        self.kind, self.base, self.hint, self.set_name = kind, base, hint, set_name
        self.entry_point_group = entry_points
        self._builtins = tuple(builtins)
        self._loader = loader
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    # ---- registration ---------------------------------------------------------------------------------
    def register(self, name: str, obj: Any = None, *, overwrite: bool = False, **info: Any) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does."""
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError(f"{self.kind} names must be non-empty strings without white space, got {name!r}.")

        def deco(o: Any) -> Any:
            if self.base is not None and not (isinstance(o, type) and issubclass(o, self.base)):
                raise ConfigError(f"Only subclasses of {self.base.__name__} can be registered as a {self.kind}; "
                                  f"got {o!r} for {name!r}.")
            if self.base is None and not callable(o):
                raise ConfigError(f"A {self.kind} must be registered as a class or factory, got {o!r}.")
            old = self._entries.get(name)
            if old is not None and old.obj is not o and not overwrite:
                raise ConfigError(f"A {self.kind} named {name!r} is already registered ({_label(old.obj)}); "
                                  "choose another name or pass overwrite=True.")
            if self.set_name and isinstance(o, type):
                o.name = name
            self._entries[name] = Entry(name, o, dict(info))
            return o

        return deco if obj is None else deco(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plug-ins that replace themselves)."""
        self._entries.pop(name, None)

    # ---- look-up --------------------------------------------------------------------------------------
    def load(self, force: bool = False) -> None:
        """Import the built-ins and run the loader (once, unless ``force``)."""
        if self._loaded and not force:
            return
        self._loaded = True
        for mod in self._builtins:
            importlib.import_module(mod)
        if self._loader is not None:
            self._loader()
        if self.entry_point_group:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        import warnings
        from importlib.metadata import entry_points
        for ep in entry_points(group=self.entry_point_group):
            try:
                obj = ep.load()
                if ep.name not in self._entries or self._entries[ep.name].obj is not obj:
                    self.register(ep.name, obj)
            except Exception as exc:  # a broken plug-in must not break hao
                warnings.warn(f"hao: could not load the {self.kind} plug-in {ep.name!r} = {ep.value!r} from the "
                              f"entry-point group {self.entry_point_group!r} ({type(exc).__name__}: {exc}).",
                              stacklevel=3)

    def load_plugin(self, spec: str, name: str | None = None) -> str:
        """Import ``"package.module:Class"``, register it (under ``name``, its ``name`` attribute, or the class
        name in lower case) and return the name it is registered under."""
        self.load()
        if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
            raise ConfigError(f"A {self.kind} plug-in is given as 'package.module:Class', got {spec!r}.")
        mod_name, attr = spec.split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ConfigError(f"Cannot import the {self.kind} plug-in module {mod_name!r} ({exc}); install the "
                              "package that provides it or fix PYTHONPATH.") from None
        obj = getattr(mod, attr, None)
        if obj is None:
            raise ConfigError(f"Module {mod_name!r} has no {attr!r}; it defines "
                              f"{sorted(n for n in vars(mod) if not n.startswith('_'))[:12]}.")
        for entry in self._entries.values():
            if entry.obj is obj:
                return entry.name
        own = vars(obj).get("name", "") if isinstance(obj, type) else ""  # not a name inherited from a built-in
        reg = name or (own if isinstance(own, str) else "") or attr.lower()
        self.register(reg, obj)
        return reg

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self.load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` of ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
        self.load()
        if not isinstance(name, str) or name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise ConfigError(f"Unknown {self.kind} {name!r}. Known {self.kind}s: {known}."
                              + (f" {self.hint}" if self.hint else ""))
        return self._entries[name]

    def get(self, name: str) -> Any:
        """The class or factory registered as ``name``."""
        return self.entry(name).obj

    def create(self, name: str, /, *args: Any, **params: Any) -> T:
        """Call the class or factory of ``name`` with ``params``; bad parameters raise :class:`ConfigError`."""
        obj = self.get(name)
        try:
            return obj(*args, **params)
        except TypeError as exc:  # a misspelt or missing parameter (also one a factory passes on)
            raise ConfigError(f"Bad parameters {sorted(params)} for {self.kind} {name!r}: {exc}. It accepts "
                              f"{accepted_parameters(obj) or 'the parameters in its documentation'}.") from exc


def accepted_parameters(obj: Any) -> list[str]:
    """The keyword parameters a class or factory accepts (its ``__init__``'s for a class)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]


def _label(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)
