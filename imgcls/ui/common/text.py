"""The pages' name for the one Markdown escape, which lives in the engine (the model card needs it too)."""

from imgcls.store.markdown import code, plain

__all__ = ["code", "plain"]
