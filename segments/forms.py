from django import forms

from people.forms import PeopleSearchForm
from segments.conditions import ATTRIBUTE_OPERATORS, ConditionError, matching_people, validate
from segments.models import Segment


class DeleteProfilesForm(forms.Form):
    """Confirm deleting a segment's profiles by typing the segment's exact name."""

    name = forms.CharField(label="Type the segment's name to confirm", max_length=200)
    suppress = forms.BooleanField(
        required=False,
        label="Also suppress their identifiers, so they can never be added again")

    def __init__(self, *args, segment: Segment, **kwargs):
        super().__init__(*args, **kwargs)
        self.segment = segment
        self.fields["name"].widget.attrs.update(autocomplete="off", spellcheck="false")

    def clean_name(self):
        name = self.cleaned_data["name"]
        if name != self.segment.name.strip():
            raise forms.ValidationError(
                "That is not this segment's name, so nothing was deleted. "
                "Type it exactly as shown, capitals included.")
        return name


class ManualSegmentChoiceForm(forms.Form):
    """Pick the manual segment that people are added to or removed from."""

    target = forms.ModelChoiceField(
        queryset=Segment.objects.none(), label="Manual segment", empty_label=None,
        error_messages={"invalid_choice": "Choose a manual segment that is not archived."})

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        # Archived segments stop changing, so they are not offered (nor accepted).
        self.fields["target"].queryset = (
            Segment.objects.in_workspace(workspace).filter(kind=Segment.Kind.MANUAL)
            .active().order_by("name"))


# Attributes whose values identify someone: never written into a job's description.
PERSONAL_FIELDS = {"email", "id", "cio_id", "phone", "first_name", "last_name", "name"}


class PeopleFilterForm(PeopleSearchForm):
    """The People page's search and filters, the filters read as a segment condition tree."""

    segment = forms.ModelChoiceField(queryset=Segment.objects.none(), required=False,
                                     label="In segment")
    not_segment = forms.ModelChoiceField(queryset=Segment.objects.none(), required=False,
                                         label="Not in segment")
    field = forms.CharField(required=False, label="Attribute",
                            widget=forms.TextInput(attrs={"placeholder": "plan, items[].price"}))
    operator = forms.ChoiceField(required=False, choices=[("", "-")] + [
        (op, op.replace("_", " ")) for op in sorted(ATTRIBUTE_OPERATORS)])
    value = forms.CharField(required=False)
    field_order = ["q", "segment", "not_segment", "field", "operator", "value", "before"]

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, workspace=workspace, **kwargs)
        segments = Segment.objects.in_workspace(workspace).order_by("name")
        self.fields["segment"].queryset = segments
        self.fields["not_segment"].queryset = segments

    def _attribute(self) -> dict | None:
        field, operator = self.cleaned_data.get("field"), self.cleaned_data.get("operator")
        if not field and not operator:
            return None
        condition = {"field": field, "operator": operator}
        value = self.cleaned_data.get("value")
        if operator == "in":
            condition["value"] = [item.strip() for item in value.split(",") if item.strip()]
        elif operator not in ("exists", "not_exists", "is_timestamp"):
            condition["value"] = value
        return {"attribute": condition}

    def describe_filters(self) -> list[str]:
        data, parts = self.cleaned_data, []
        if data.get("segment"):
            parts.append(f"in segment \u201c{data['segment'].name}\u201d")
        if data.get("not_segment"):
            parts.append(f"not in segment \u201c{data['not_segment'].name}\u201d")
        attribute = self._attribute()
        if attribute:
            condition = attribute["attribute"]
            words = [condition["field"], condition["operator"].replace("_", " ")]
            if "value" in condition:
                value = condition["value"]
                value = ", ".join(value) if isinstance(value, list) else value
                # A job's description stays free of personal data: no identifiers.
                personal = (condition["field"].split(".")[0] in PERSONAL_FIELDS
                            or "@" in value)
                words.append("(a value)" if personal else value)
            parts.append(" ".join(words))
        return parts

    def clean(self):
        cleaned = super().clean()
        attribute = self._attribute()
        if attribute is not None:
            try:
                validate(attribute, workspace=self.workspace)
            except ConditionError as error:
                self.add_error("field", "; ".join(message for _, message in error.problems))
        return cleaned

    def condition_tree(self) -> dict | None:
        """Return the filters as one condition tree, or None when nothing filters."""
        if not self.is_bound or not self.is_valid():
            return None
        nodes = []
        if self.cleaned_data.get("segment"):
            nodes.append({"segment": {"id": self.cleaned_data["segment"].pk}})
        if self.cleaned_data.get("not_segment"):
            nodes.append({"not": {"segment": {"id": self.cleaned_data["not_segment"].pk}}})
        attribute = self._attribute()
        if attribute:
            nodes.append(attribute)
        if not nodes:
            return None
        return nodes[0] if len(nodes) == 1 else {"and": nodes}

    def filter(self, people):
        """Narrow ``people`` to those the search and the filters select."""
        tree = self.condition_tree()
        if tree is not None:
            people = people & matching_people(self.workspace, tree)
        return self.search(people)
