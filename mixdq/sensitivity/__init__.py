"""Metric-decoupled sensitivity: one layer quantized at a time, at each candidate width, its damage
measured by image SSIM and UNet-output SQNR (`driver.sweep`), journaled so a run resumes, serially
or on Ray workers; the result is a `Profile` (or MixDQ's published one, `importers`)."""
