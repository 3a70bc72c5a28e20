"""What the tabs share: the model picker, the per-session locks, the budget controls, and the
registry of models (shared by all users, see `app.session`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

import mixdq

from ..session import ModelEntry


@dataclass
class Shared:
    models: dict[str, ModelEntry]
    model: gr.Dropdown
    locks: gr.State  # tuple of (layer, "fp" or bits): this session's pinned layers
    url: gr.State  # (model, budget MB) asked for by the page's URL, or None
    budget: dict[str, Any] = field(default_factory=dict)  # the budget view's controls, by name
    sensitivity: dict[str, Any] = field(default_factory=dict)
    compare: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    analyse: dict[str, Any] = field(default_factory=dict)
    later: list = field(default_factory=list)  # wiring that needs every tab built first

    def entry(self, key: str) -> ModelEntry:
        if key not in self.models:
            raise gr.Error(f"unknown model {key!r}; choose one of {', '.join(self.models)}")
        return self.models[key]


def friendly(fn):
    """Errors a user can fix become a message in the page (gr.Error), never a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except mixdq.MixDQError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper
