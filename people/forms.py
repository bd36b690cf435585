import json

from django import forms
from django.db.models import Q

from engage.models import Workspace
from people.models import Suppression
from segments.conditions import ATTRIBUTE_OPERATORS, ConditionError, validate
from segments.models import Segment


class PeopleFilterForm(forms.Form):
    """The People page's search and filters, read as a segment condition tree."""

    q = forms.CharField(required=False, label="Search",
                        widget=forms.TextInput(attrs={"placeholder": "id, email or cio_id"}))
    segment = forms.ModelChoiceField(queryset=Segment.objects.none(), required=False,
                                     label="In segment")
    not_segment = forms.ModelChoiceField(queryset=Segment.objects.none(), required=False,
                                         label="Not in segment")
    field = forms.CharField(required=False, label="Attribute",
                            widget=forms.TextInput(attrs={"placeholder": "plan, items[].price"}))
    operator = forms.ChoiceField(required=False, choices=[("", "-")] + [
        (op, op.replace("_", " ")) for op in sorted(ATTRIBUTE_OPERATORS)])
    value = forms.CharField(required=False)
    before = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=1)

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace
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

    def search(self, people):
        """Narrow ``people`` to an exact id, email or cio_id, if one was typed."""
        term = (self.cleaned_data.get("q") or "").strip() if self.is_bound else ""
        if not term:
            return people
        condition = Q(customer_id=term) | Q(cio_id=term.removeprefix("cio_"))
        if "@" in term:
            condition |= Q(email_key=term.lower()) | Q(email__iexact=term)
        return people.filter(condition)


class AttributeForm(forms.Form):
    """Set one attribute; a value that reads as JSON (3, true, {...}) is stored as such."""

    name = forms.CharField(max_length=150)
    value = forms.CharField(required=False, help_text="Empty removes the attribute.")

    def parsed_value(self):
        value = self.cleaned_data["value"]
        try:
            return json.loads(value)
        except ValueError:
            return value


class IdentifierModeForm(forms.Form):
    mode = forms.ChoiceField(choices=Workspace.IdentifierMode.choices)


class SuppressionFilterForm(forms.Form):
    """Search the suppression list by identifier, exactly or by its start."""

    q = forms.CharField(required=False, label="Identifier", max_length=254,
                        widget=forms.TextInput(attrs={"placeholder": "id or email"}))
    match = forms.ChoiceField(required=False, choices=[("prefix", "starts with"),
                                                       ("exact", "is exactly")])
    type = forms.ChoiceField(required=False, label="Type",
                             choices=[("", "any")] + Suppression.IdentifierType.choices)
    before = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=1)

    def search(self, suppressions):
        """Narrow ``suppressions`` to what the form asks for (all when it is unbound)."""
        if not self.is_bound:
            return suppressions
        data = self.cleaned_data
        if data.get("type"):
            suppressions = suppressions.filter(identifier_type=data["type"])
        term = (data.get("q") or "").strip()
        if term:
            # Emails are stored lowercased; ids as they are.
            if data.get("match") == "exact":
                suppressions = suppressions.filter(Q(value=term) | Q(value=term.lower()))
            else:
                suppressions = suppressions.filter(
                    Q(value__startswith=term) | Q(value__startswith=term.lower()))
        return suppressions
