"""MixDQ Studio: a thin Gradio layer over the `mixdq` engine."""
