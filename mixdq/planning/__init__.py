"""The integer program: a profile and a memory budget in, one bit-width per layer out (`Planner`),
live on a precomputed frontier and exactly with PuLP; MixDQ's own recipe in `recipe`."""
