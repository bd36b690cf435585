"""The data-driven segment builder: new, edit, live preview."""

urlpatterns: list = []
