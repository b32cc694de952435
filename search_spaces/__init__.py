"""One module per search-space family. Every module here is imported by ``hao.space.discover_spaces``;
add a file with ``@register_space(...)`` factories and it appears in ``hao spaces`` without editing hao/."""
