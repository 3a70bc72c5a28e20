"""The embedded model: a small text-to-image pipeline trained here on captioned images of simple
shapes (made on the fly from a seed), its attribute classifier, and how to rebuild both
(`python -m mixdq.embedded`)."""
