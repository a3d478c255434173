"""framegraph's transport factories: each module registers its types through a ``TYPES`` list."""
