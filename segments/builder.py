"""The segment builder: create a segment, edit a data-driven one, preview unsaved conditions.

The builder's rows are posted as indexed fields (see ``segments.builder_forms``). Adding or
removing a row, or changing an operator (which changes the value input), posts the form
with an ``op`` and gets the builder back re-rendered with a fresh preview; typing posts to
the preview, which answers with the count and sample people, or with the validator's
messages swapped in beside the rows they are about.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST

from engage.workspaces import role_required
from segments import conditions, services
from segments.builder_forms import (
    ATTRIBUTE_OPERATOR_CHOICES,
    COUNT_OPERATOR_CHOICES,
    GROUP_CHOICES,
    TIMESTAMP_UNIT_CHOICES,
    Builder,
    SegmentForm,
    row_kinds,
)
from segments.models import Segment

TEMPLATE = "segments/builder.html"
SAMPLE_SIZE = 10


@role_required("editor")
@require_http_methods(["GET", "POST"])
def segment_new(request):
    return _builder_page(request, None)


@role_required("editor")
@require_http_methods(["GET", "POST"])
def segment_edit(request, pk):
    segment = get_object_or_404(Segment, pk=pk, workspace=request.membership.workspace)
    return _builder_page(request, segment)


@role_required("editor")
@require_POST
def segment_preview(request):
    """Render the preview of the posted rows, and each row's problems out of band."""
    workspace = request.membership.workspace
    segment = None
    if request.POST.get("segment"):
        segment = get_object_or_404(Segment, pk=_int(request.POST["segment"]),
                                    workspace=workspace)
    builder = Builder.from_post(request.POST)
    context = {"builder": builder, **_preview(builder, workspace, segment)}
    return render(request, f"{TEMPLATE}#preview-response", context)


def _builder_page(request, segment: Segment | None):
    workspace = request.membership.workspace
    creating = segment is None
    if request.method == "GET":
        form = SegmentForm(creating=creating, initial=_initial(segment))
        builder = Builder.from_tree(segment.conditions if segment else None)
        return _render(request, form, builder, segment)

    form = SegmentForm(request.POST, creating=creating)
    builder = Builder.from_post(request.POST)
    op = request.POST.get("op", "save")
    if op != "save":
        added = builder.apply(op)
        builder.renumber()
        template = f"{TEMPLATE}#builder" if request.htmx else TEMPLATE
        return _render(request, form, builder, segment, template=template,
                       focus=added.id if added else None)

    manual = (segment.is_manual if segment else
              request.POST.get("kind") == Segment.Kind.MANUAL)
    tree, problems = None, []
    if not manual:
        tree = builder.tree()
        if tree is None:
            problems = [("(root)", "Add at least one condition.")]
        else:
            try:
                conditions.validate(tree, workspace=workspace,
                                    segment_id=segment.pk if segment else None)
            except conditions.ConditionError as error:
                problems = error.problems
    if form.is_valid() and not problems:
        data = form.cleaned_data
        try:
            if segment is None:
                segment = services.create_segment(
                    workspace, name=data["name"], description=data["description"],
                    conditions_tree=tree)
            else:
                services.update_segment(segment, name=data["name"],
                                        description=data["description"], conditions_tree=tree)
        except conditions.ConditionError as error:
            problems = error.problems
            if segment is not None:
                segment.refresh_from_db()  # nothing was written; show it as it is
        else:
            messages.success(request, f"Saved the segment “{segment.name}”.")
            return redirect(saved_url(segment))
    builder.renumber()
    return _render(request, form, builder, segment, problems=problems)


def saved_url(segment: Segment) -> str:
    """Return the segment's page, or its builder while there is no segment page."""
    try:
        return reverse("segments:detail", kwargs={"pk": segment.pk})
    except NoReverseMatch:
        return reverse("segments:edit", kwargs={"pk": segment.pk})


def _initial(segment: Segment | None) -> dict:
    if segment is None:
        return {"kind": Segment.Kind.DATA_DRIVEN}
    return {"name": segment.name, "description": segment.description}


def _render(request, form, builder: Builder, segment: Segment | None, *,
            template: str = TEMPLATE, focus: int | None = None,
            problems: list | None = None):
    workspace = request.membership.workspace
    context = {
        "form": form,
        "builder": builder,
        "segment": segment,
        "focus": focus,
        "form_action": (reverse("segments:edit", kwargs={"pk": segment.pk}) if segment
                        else reverse("segments:new")),
        "segment_choices": _segment_choices(workspace, segment, builder),
        "attribute_operators": ATTRIBUTE_OPERATOR_CHOICES,
        "count_operators": COUNT_OPERATOR_CHOICES,
        "timestamp_units": TIMESTAMP_UNIT_CHOICES,
        "group_choices": GROUP_CHOICES,
        "addable_rows": list(row_kinds().items()),
        "engagement_note": _engagement_note(workspace),
    }
    if problems:
        builder.tree()  # gives every row its place in the tree
        _place(builder, problems, workspace, segment)
        context.update(preview_state="invalid", problem_count=builder.problem_count)
    elif segment is None or not segment.is_manual:
        context.update(_preview(builder, workspace, segment))
        added = builder.find(focus) if focus is not None else None
        if added is not None and context["preview_state"] == "invalid":
            # A row just added is blank: no need to call that a mistake yet.
            for row in added.walk():
                row.problems = []
            context["problem_count"] = builder.problem_count
            if not builder.problem_count:
                context["preview_state"] = "incomplete"
    return render(request, template, context)


def _preview(builder: Builder, workspace, segment: Segment | None) -> dict:
    """Return the preview's context: the count and sample, or the tree's problems."""
    tree = builder.tree()
    if tree is None:
        return {"preview_state": "empty"}
    try:
        conditions.validate(tree, workspace=workspace,
                            segment_id=segment.pk if segment else None)
        result = services.preview(workspace, tree, sample_size=SAMPLE_SIZE)
    except conditions.ConditionError as error:
        _place(builder, error.problems, workspace, segment)
        return {"preview_state": "invalid", "problem_count": builder.problem_count}
    return {"preview_state": "ok", "count": result.count, "sample": result.sample}


def _place(builder: Builder, problems: list, workspace, segment: Segment | None) -> None:
    """Put problems beside their rows, finding the segment rows that lead back here.

    A reference that comes back to the segment through others is reported without a place
    in the tree; each segment row is checked on its own to find the ones that do.
    """
    placed = []
    for where, message in problems:
        culprits = [] if builder.names_a_row(where) or segment is None else [
            row for row in builder.rows()
            if row.kind == "segment"
            and _refused(row.values["segment"], message, workspace, segment)]
        for row in culprits:
            row.problems.append(message)
        if not culprits:
            placed.append((where, message))
    builder.place(placed)


def _refused(segment_text: str, message: str, workspace, segment: Segment) -> bool:
    if not segment_text.isdigit():
        return False
    try:
        conditions.validate({"segment": {"id": int(segment_text)}}, workspace=workspace,
                            segment_id=segment.pk)
    except conditions.ConditionError as error:
        return message in [text for _, text in error.problems]
    return False


def _segment_choices(workspace, segment: Segment | None, builder: Builder) -> list:
    """Return (id text, label) of the segments a condition may name, and any unknown named."""
    others = Segment.objects.in_workspace(workspace).order_by("name", "pk")
    if segment is not None:
        others = others.exclude(pk=segment.pk)
    choices = [(str(pk), f"{name} (archived)" if archived else name)
               for pk, name, archived in others.values_list("pk", "name", "archived")]
    known = {value for value, _ in choices}
    for row in builder.rows():
        chosen = row.values.get("segment") if row.kind == "segment" else None
        if chosen and chosen not in known:
            choices.append((chosen, f"segment {chosen} (not in this workspace)"))
            known.add(chosen)
    return choices


def _engagement_note(workspace) -> str:
    """Return why engagement conditions cannot be chosen, in the validator's words.

    Empty once an app registers the ``engagement`` kind (its row is then offered).
    """
    if conditions.node_kind("engagement") is not None:
        return ""
    try:
        conditions.validate({"engagement": {"metric": "opened"}}, workspace=workspace)
    except conditions.ConditionError as error:
        return error.problems[0][1]
    return ""


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0
