"""What the tabs share: the model picker, the per-session locks, the state the page's URL asks
for, and the registry of models (shared by all users, see `app.registry`). What one tab uses of
another is that tab's own dataclass (`budget.BudgetTab`, ...), handed to it by `app.studio`."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import gradio as gr

import mixdq

from ..registry import ModelEntry


@dataclass
class Shared:
    models: dict[str, ModelEntry]
    model: gr.Dropdown
    locks: gr.State  # tuple of (layer, "fp" or bits): this session's pinned layers
    url: gr.State  # (model, budget MB) asked for by the page's URL, or None

    def entry(self, key: str) -> ModelEntry:
        if key not in self.models:
            raise gr.Error(f"unknown model {key!r}; choose one of {', '.join(self.models)}")
        return self.models[key]


def friendly(fn):
    """Errors a user can fix become a message in the page (gr.Error), never a stack trace. A
    generator stays one (Gradio streams what it yields)."""

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except mixdq.MixDQError as e:
                raise gr.Error(str(e), print_exception=False) from None

        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except mixdq.MixDQError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper
