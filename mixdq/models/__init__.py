"""Where pipelines come from: the models known by name and how each is sampled, loading (embedded,
hub id, local folder, never pickle), the layer inventory (groups, sizes, places in the UNet),
full-size pipelines with random weights, prompt checks and seeded image generation."""
