import json

from django import forms
from django.db.models import Q

from engage.models import Workspace
from people.models import Suppression
from people.validation import email_key


class PeopleSearchForm(forms.Form):
    """The People page's search: an exact id, email or cio_id, and the keyset page.

    Apps above add filters in a subclass (``PEOPLE_FILTER_FORM``, see people.selection)
    that narrows the people in ``filter``.
    """

    q = forms.CharField(required=False, label="Search",
                        widget=forms.TextInput(attrs={"placeholder": "id, email or cio_id"}))
    before = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=1)

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def filter(self, people):
        """Narrow ``people`` to those the (valid or unbound) form asks for."""
        return self.search(people)

    def describe(self) -> str:
        """Return the filters in words for a job's description, free of personal data."""
        if not self.is_bound or not self.is_valid():
            return "matching the filters"
        parts = self.describe_filters()
        if (self.cleaned_data.get("q") or "").strip():
            parts.append("found by a search")  # the term may be someone's email
        return "matching " + " and ".join(parts) if parts else "(no filters)"

    def describe_filters(self) -> list[str]:
        """Return the filters beyond the search in words (subclasses that add filters say)."""
        return []

    def search(self, people):
        """Narrow ``people`` to an exact id, email or cio_id, if one was typed."""
        term = (self.cleaned_data.get("q") or "").strip() if self.is_bound else ""
        if not term:
            return people
        condition = Q(customer_id=term) | Q(cio_id=term.removeprefix("cio_"))
        if "@" in term:
            condition |= Q(email_key=email_key(term)) | Q(email__iexact=term)
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
            # Emails are stored folded (email_key); ids as they are.
            if data.get("match") == "exact":
                suppressions = suppressions.filter(Q(value=term) | Q(value=email_key(term)))
            else:
                suppressions = suppressions.filter(
                    Q(value__startswith=term) | Q(value__startswith=email_key(term)))
        return suppressions
