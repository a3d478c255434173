"""framegraph's processor library: each module registers its types through a ``TYPES`` list."""
