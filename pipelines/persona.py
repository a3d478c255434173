"""Personas: a system prompt template whose ``{variables}`` come from the YAML.

A persona is one prompt written once and specialised per agent, e.g. a
language tutor whose prompt names ``{subject}`` and ``{learner_level}``.
Placeholders use Python's ``str.format`` syntax (``{{`` for a literal brace)
because ``${...}`` is already the loader's environment substitution.

Part of the framework (the context block's ``variables`` are the spec's), so
the context factory, the scripted LLM and the server's per-session
variables (``pipelines.server.manager``) read one implementation.
"""

from collections.abc import Mapping
from string import Formatter


def placeholders(template: str) -> set[str]:
    """The variable names a template refers to.

    Raises:
        ValueError: The template is malformed or uses something other than
            plain names (``{0}``, ``{a.b}``, ``{a[0]}``, ``{}``).
    """
    names = set()
    for _, field, _, _ in Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"placeholder '{{{field}}}' must be a plain variable name")
        names.add(field)
    return names


def fill(template: str, variables: Mapping[str, object]) -> str:
    """Fills ``template``'s placeholders from ``variables``.

    Raises:
        ValueError: A placeholder has no variable; names it.
    """
    missing = sorted(placeholders(template) - variables.keys())
    if missing:
        raise ValueError(f"'{{{missing[0]}}}' is used but variables has no '{missing[0]}'")
    return template.format_map({k: str(v) for k, v in variables.items()})


def render_persona(template: str, variables: Mapping[str, object]) -> str:
    """Fills a system prompt template; every variable must also be used.

    Unused variables are errors too, so a misspelt name fails loudly instead
    of leaving a silently odd prompt.

    Raises:
        ValueError: Naming the missing or unused variable.
    """
    prompt = fill(template, variables)
    unused = sorted(variables.keys() - placeholders(template))
    if unused:
        raise ValueError(f"variable '{unused[0]}' is not used by the prompt")
    return prompt
