from django import forms

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
