"""Template tags of the campaign pages: one step's figures, where a page shows a step.

``{% load campaign_insights %}{% step_metrics figures step.id campaign.pk step.type %}``
renders
``campaigns/insights/_step_metrics.html`` with the figures of that step, from the dict
``campaigns.metrics.step_metrics(campaign)`` returns (one read for every step).
"""

from django import template

from campaigns.metrics import STEP_METRICS

register = template.Library()


@register.inclusion_tag("campaigns/insights/_step_metrics.html")
def step_metrics(figures: dict, step_id: str, campaign_id: int | None = None,
                 step_type: str = ""):
    """Render one step's figures (zeros for a step nothing reached yet); message figures
    for an email or webhook step, or wherever there are some."""
    return {"metrics": (figures or {}).get(step_id) or dict.fromkeys(STEP_METRICS, 0),
            "step_id": step_id, "campaign_id": campaign_id, "step_type": step_type}
