"""The embedded model's world: captioned images of simple shapes, made on the fly from a seed."""
