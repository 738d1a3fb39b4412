"""A module that cannot be imported."""

raise ImportError("ferrocorn-test: this app module is deliberately broken")
