"""Search spaces: the base class, candidates, the registry and shared building blocks."""
from hao.space.base import Candidate, Decision, Gate, LayerPerturbation, SearchSpace, Unit
from hao.space.registry import discover_spaces, get_space, list_spaces, register_space, space_info

__all__ = ["Candidate", "Decision", "Gate", "LayerPerturbation", "SearchSpace", "Unit", "discover_spaces",
           "get_space", "list_spaces", "register_space", "space_info"]
