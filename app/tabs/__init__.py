"""The studio's tabs: each `build(shared)` lays out its components and wires its own events."""
