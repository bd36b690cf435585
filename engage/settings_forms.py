"""Forms of the workspace settings pages."""

from django import forms
from django.contrib.auth import get_user_model

from engage.models import Membership


class EmailUpdateForm(forms.Form):
    allow_email_update_by_id = forms.BooleanField(
        required=False, label="Let an identify addressed by id change the person's email")


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
