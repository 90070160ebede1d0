"""Rendering notification templates (Django's template language).

A template comes from the calling client's own templates in the database
(:class:`zerver.models.Template`, never another client's) or from the
built-ins on disk, ``templates/notifications/<name>/{subject.txt,body.txt,body.html}``.
Variables the template uses must all be given: Django would silently render
a missing one as an empty string, which is how a notification says "Hello ,".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.template import Context, Engine, TemplateDoesNotExist
from django.template.base import VariableNode
from django.template.defaulttags import ForNode, WithNode
from django.template.loader import get_template

from zerver.models import ApiClient, Template


class TemplateError(ValueError):
    """The template is unknown, broken, or lacks variables; ``field`` says which input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Rendered:
    subject: str
    text: str
    html: str


_engine = Engine(autoescape=False)
_html_engine = Engine(autoescape=True)


def _source(name: str, client: ApiClient) -> tuple[str, str, str] | None:
    # By the client's id, never ``client=None``: that would find the unassigned templates.
    row = Template.objects.filter(client_id=client.pk, name=name).first()
    if row is not None:
        return row.subject, row.text, row.html
    parts = []
    for part in ("subject.txt", "body.txt", "body.html"):
        try:
            parts.append(get_template(f"notifications/{name}/{part}").template.source)
        except TemplateDoesNotExist:
            parts.append("")
    if not parts[1]:
        return None
    return parts[0].strip(), parts[1], parts[2]


def _root(expression: Any) -> str | None:
    """``user.name|upper`` -> ``user``; None for a literal."""
    lookups = getattr(expression.var, "lookups", None)
    return lookups[0] if lookups else None


def variables_used(nodelist: Any, bound: frozenset[str] = frozenset()) -> set[str]:
    """The variables a template prints (or loops over) without binding them itself.

    Variables only tested in ``{% if %}`` are optional on purpose.
    """
    used: set[str] = set()
    for node in nodelist:
        inner = bound
        if isinstance(node, VariableNode):
            used.add(_root(node.filter_expression) or "")
        elif isinstance(node, ForNode):
            used.add(_root(node.sequence) or "")
            inner = bound | set(node.loopvars) | {"forloop"}
        elif isinstance(node, WithNode):
            inner = bound | set(node.extra_context)
        for attr in node.child_nodelists:
            used |= variables_used(getattr(node, attr, None) or [], frozenset(inner))
    return used - bound - {""}


def render(name: str, variables: dict[str, Any], client: ApiClient) -> Rendered:
    """Render ``client``'s template ``name`` with ``variables``; :class:`TemplateError` if that cannot be done."""
    source = _source(name, client)
    if source is None:
        raise TemplateError("template", f"unknown template {name!r}")
    rendered = []
    missing: set[str] = set()
    for engine, text in zip((_engine, _engine, _html_engine), source, strict=True):
        try:
            compiled = engine.from_string(text)
        except Exception as e:
            raise TemplateError("template", f"template {name!r} does not compile: {e}") from e
        missing |= variables_used(compiled.nodelist) - set(variables)
        rendered.append(compiled.render(Context(variables, autoescape=engine.autoescape)) if not missing else "")
    if missing:
        raise TemplateError("variables", f"missing variables for template {name!r}: {', '.join(sorted(missing))}")
    return Rendered(subject=rendered[0].strip(), text=rendered[1], html=rendered[2])
