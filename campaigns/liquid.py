"""Liquid templates of campaigns: one environment with limits, strict about typos.

A variable that does not exist is an error (a message never goes out with a blank where
a name should be), unless the template says what to use instead with ``| default``.
"""

from functools import lru_cache
from typing import Any

from liquid import Environment, StrictDefaultUndefined
from liquid.exceptions import LiquidError


class TemplateError(Exception):
    """A template that cannot be parsed or rendered, with the line and the reason."""


class CampaignEnvironment(Environment):
    loop_iteration_limit = 10_000
    output_stream_limit = 1_000_000  # characters of output
    context_depth_limit = 30
    local_namespace_limit = 100_000


ENVIRONMENT = CampaignEnvironment(undefined=StrictDefaultUndefined)


@lru_cache(maxsize=512)
def _parse(source: str, environment: Environment):
    return environment.from_string(source)


def _describe(error: LiquidError) -> str:
    message = str(error).splitlines()[0]
    token = getattr(error, "token", None)
    line = None
    if token is not None and getattr(token, "source", None) is not None:
        line = token.source.count("\n", 0, token.start_index) + 1
    return f"line {line}: {message}" if line else message


def render(source: str, context: dict[str, Any], *,
           environment: Environment = ENVIRONMENT) -> str:
    """Render ``source`` with ``context``; raise TemplateError saying where and why.

    ``environment`` is another CampaignEnvironment where a text needs one (the HTML of
    an email escapes what it inserts: ``campaigns.email``).
    """
    if "{" not in source:
        return source  # plain text: nothing to render
    try:
        return _parse(source, environment).render(**context)
    except LiquidError as error:
        raise TemplateError(_describe(error)) from None


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render the strings inside a JSON value (an attribute, event data), keeping its shape."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    return value
