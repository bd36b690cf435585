"""The forms of the email settings pages: searching and adding to the suppression list."""

from django import forms

from campaigns.bounces import valid_address
from campaigns.models import EmailSuppression
from people.validation import email_key


class EmailSuppressionFilterForm(forms.Form):
    """Search the email suppression list by address (its start, or exactly) and reason."""

    q = forms.CharField(required=False, label="Address", max_length=254,
                        widget=forms.TextInput(attrs={"placeholder": "email or its start"}))
    match = forms.ChoiceField(required=False, choices=[("prefix", "starts with"),
                                                       ("exact", "is exactly")])
    reason = forms.ChoiceField(required=False, label="Reason",
                               choices=[("", "any")] + EmailSuppression.Reason.choices)
    before = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=1)

    def search(self, suppressions):
        """Narrow ``suppressions`` to what the form asks for (all when it is unbound)."""
        if not self.is_bound:
            return suppressions
        data = self.cleaned_data
        if data.get("reason"):
            suppressions = suppressions.filter(reason=data["reason"])
        term = (data.get("q") or "").strip()
        if term:
            # Addresses are stored folded (email_key).
            if data.get("match") == "exact":
                suppressions = suppressions.filter(address=email_key(term))
            else:
                suppressions = suppressions.filter(address__startswith=email_key(term))
        return suppressions


class EmailSuppressionAddForm(forms.Form):
    address = forms.CharField(label="Email address", max_length=254,
                              widget=forms.EmailInput(attrs={"placeholder": "name@example.com"}))

    def clean_address(self):
        address = self.cleaned_data["address"].strip()
        if not valid_address(address):
            raise forms.ValidationError("Enter an email address.")
        return address
