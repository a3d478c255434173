"""An example third-party framegraph processor type: ``type: shout``.

Everything a plug-in needs is in ``pipelines``' public surface (its
``__all__``; the contract is documented in ``pipelines/registry.py``): a params model
(``pipelines.Params``, validated with file:line:column errors), a
factory ``make_shout(params, ctx) -> FrameProcessor`` named by the registry's
rule, and a ``TYPES`` list that the package's ``pyproject.toml`` registers
under the ``framegraph.types`` entry point group. pipecat is imported only
when the factory runs, so validating a config stays light.

    processors:
      loud: {type: shout, suffix: "!!"}
"""

from pydantic import Field

from pipelines import BuildContext, Params, TypeInfo


class ShoutParams(Params):
    suffix: str = Field("!", max_length=8, description="appended to every text")


def make_shout(params: ShoutParams, ctx: BuildContext):
    """The ``shout`` processor, named by its config id."""
    from framegraph_shout.processor import Shout

    return Shout(suffix=params.suffix, name=ctx.processor_id)


TYPES = [TypeInfo("processor", "shout", ShoutParams, make_shout, "upper-cases the text that passes (example plug-in)")]
