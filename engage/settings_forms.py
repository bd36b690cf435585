"""Forms of the workspace settings pages."""

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from engage.models import Membership, Workspace
from people.models import Suppression
from people.validation import email_key


class IdentifierModeForm(forms.Form):
    mode = forms.ChoiceField(choices=Workspace.IdentifierMode.choices)


class EmailUpdateForm(forms.Form):
    allow_email_update_by_id = forms.BooleanField(
        required=False, label="Let an identify addressed by id change the person's email")


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


class MemberAddForm(forms.Form):
    """Add an existing user to the workspace, found by username or email."""

    user = forms.CharField(label="Username or email", max_length=254)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.VIEWER)

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def clean_user(self):
        name = self.cleaned_data["user"].strip()
        users = get_user_model().objects.filter(is_active=True)
        user = users.filter(username=name).first()
        if user is None and "@" in name:
            matches = list(users.filter(email__iexact=name)[:2])
            if len(matches) > 1:
                raise forms.ValidationError(
                    "Several users have this email: enter the username instead.")
            user = matches[0] if matches else None
        if user is None:
            raise forms.ValidationError(
                "No user has this username or email: they need an account first.")
        if Membership.objects.filter(workspace=self.workspace, user=user).exists():
            raise forms.ValidationError(f"{user.get_username()} is already a member.")
        return user


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
