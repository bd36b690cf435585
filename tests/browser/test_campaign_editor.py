"""The workflow editor in a real browser: drag and drop (SortableJS, forceFallback),
blocks with paths, two tabs at once, a repeated drop, the "+" menu by keyboard."""

from playwright.sync_api import expect

from campaigns import services
from campaigns.models import Campaign


def make_campaign(workspace, steps=()):
    return services.create_campaign(workspace, {
        "name": "Re-engage", "trigger": {"event": {"name": "signed_up"}},
        "workflow": {"steps": list(steps)}})


def steps_of(campaign):
    campaign = Campaign.objects.get(pk=campaign.pk)
    return campaign.definition["workflow"]["steps"]


def drag(page, source, target, *, position="center"):
    """Drag ``source`` onto ``target`` with real mouse moves (SortableJS's fallback mode
    follows mousemove events, which ``drag_to`` alone does not make).

    Over a step or a slot, the upper half drops before it and the lower half after it.
    The canvas shifts as the dragged item passes over it, so the pointer follows the
    target until it stays put.
    """
    target = target.element_handle()  # the element itself: its neighbours change on the way
    source.scroll_into_view_if_needed()
    box = source.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 5, y + 5, steps=5)
    # Never the exact middle: there SortableJS has no side to drop on.
    fraction = {"top": 0.3, "center": 0.6, "bottom": 0.7}[position]
    last = None
    for _ in range(6):
        to = target.bounding_box()
        here = (to["x"] + to["width"] / 2, to["y"] + to["height"] * fraction)
        if here == last:
            break
        page.mouse.move(*here, steps=10)
        page.wait_for_timeout(250)  # SortableJS looks every 50 ms; its animation settles
        last = here
    page.mouse.up()


def open_editor(page, campaign):
    page.goto(f"/campaigns/{campaign.pk}/workflow/")
    expect(page.locator("#canvas[data-editable=true]")).to_be_visible()


def test_drag_a_delay_onto_the_canvas(editor_page, workspace):
    page = editor_page
    campaign = make_campaign(workspace)
    open_editor(page, campaign)

    drag(page, page.locator("#palette .palette-item[data-type=delay]"),
         page.locator("#canvas-zoom > .sequence"))

    expect(page.locator(".sequence .step.step-delay")).to_have_count(1)
    expect(page.locator(".step.step-delay .step-flag")).to_have_text("Not configured")
    assert [step["type"] for step in steps_of(campaign)] == ["delay"]


def test_a_branch_with_steps_dragged_into_both_paths(editor_page, workspace):
    page = editor_page
    campaign = make_campaign(workspace, [{"id": "first", "type": "delay",
                                          "duration": {"days": 1}}])
    open_editor(page, campaign)

    drag(page, page.locator("#palette .palette-item[data-type=branch]"),
         page.locator("#step-first + .slot"))
    branch = page.locator(".step.step-branch")
    expect(branch).to_have_count(1)
    yes = branch.locator(".path[data-path-key=true] > .sequence > .slot")
    drag(page, page.locator("#palette .palette-item[data-type=email]"), yes)
    expect(page.locator(".path[data-path-key=true] .step-email")).to_have_count(1)
    no = page.locator(".step.step-branch .path[data-path-key=false] > .sequence > .slot")
    drag(page, page.locator("#palette .palette-item[data-type=exit]"), no)
    expect(page.locator(".path[data-path-key=false] .step-exit")).to_have_count(1)

    top = steps_of(campaign)
    assert [step["type"] for step in top] == ["delay", "branch"]
    assert [[step["type"] for step in path["steps"]] for path in top[1]["paths"]] == [
        ["email"], ["exit"]]


def test_moving_a_block_carries_its_contents(editor_page, workspace):
    page = editor_page
    campaign = make_campaign(workspace, [
        {"id": "first", "type": "delay", "duration": {"days": 1}},
        {"id": "split", "type": "random_split", "paths": [
            {"key": "A", "weight": 50, "steps": [{"id": "inside", "type": "exit"}]},
            {"key": "B", "weight": 50, "steps": []}]},
        {"id": "last", "type": "delay", "duration": {"hours": 1}},
    ])
    open_editor(page, campaign)

    drag(page, page.locator("#step-split > .step-card"),
         page.locator("#canvas-zoom > .sequence > .slot").first)

    expect(page.locator("#canvas[data-version='2']")).to_be_attached()
    steps = steps_of(campaign)
    assert [step["id"] for step in steps] == ["split", "first", "last"]
    assert steps[0]["paths"][0]["steps"] == [{"id": "inside", "type": "exit", "name": ""}]
    expect(page.locator("#step-split .path[data-path-key=A] #step-inside")).to_be_visible()


def test_two_tabs_at_once_the_second_gets_the_fresh_canvas(editor_page, workspace):
    first = editor_page
    campaign = make_campaign(workspace, [{"id": "first", "type": "delay",
                                          "duration": {"days": 1}}])
    second = first.context.new_page()
    open_editor(first, campaign)
    open_editor(second, campaign)

    drag(first, first.locator("#palette .palette-item[data-type=exit]"),
         first.locator("#step-first + .slot"))
    expect(first.locator(".step-exit")).to_have_count(1)

    with second.expect_response(lambda r: r.url.endswith("/workflow/add/")) as answer:
        drag(second, second.locator("#palette .palette-item[data-type=webhook]"),
             second.locator("#step-first + .slot"))
    assert answer.value.status == 409
    expect(second.locator("#editor-message")).to_contain_text("changed since you opened it")
    expect(second.locator(".step-exit")).to_have_count(1)  # the first tab's step, now here
    expect(second.locator(".step-webhook")).to_have_count(0)
    assert [step["type"] for step in steps_of(campaign)] == ["delay", "exit"]

    # The fresh canvas takes the edit again.
    drag(second, second.locator("#palette .palette-item[data-type=webhook]"),
         second.locator("#step-first + .slot"))
    expect(second.locator(".step-webhook")).to_have_count(1)
    assert len(steps_of(campaign)) == 3


def test_a_rapid_second_drop_waits_for_the_first_and_is_applied_too(editor_page, workspace):
    page = editor_page
    campaign = make_campaign(workspace, [{"id": "first", "type": "delay",
                                          "duration": {"days": 1}}])
    open_editor(page, campaign)
    requests = []

    def hold_the_first(route):  # its answer comes late: the second drop is made before it
        requests.append(route)
        if len(requests) > 1:
            route.continue_()

    page.route("**/workflow/add/", hold_the_first)
    palette = page.locator("#palette .palette-item")
    end = page.locator("#canvas-zoom > .sequence > .slot").last
    drag(page, palette.and_(page.locator("[data-type=delay]")), end)
    drag(page, palette.and_(page.locator("[data-type=exit]")), end)
    expect(page.locator("#canvas-zoom > .sequence > .palette-item")).to_have_count(2)
    page.wait_for_timeout(300)
    assert len(requests) == 1  # the second edit waits for the first's answer
    shown = page.evaluate("""Array.from(document.querySelectorAll(
        '#canvas-zoom > .sequence > .step, #canvas-zoom > .sequence > .palette-item'),
        (item) => item.dataset.type)""")
    assert sorted(shown) == ["delay", "delay", "exit"]
    requests[0].continue_()

    expect(page.locator("#canvas[data-version='3']")).to_be_attached()
    expect(page.locator(".sequence .step-delay")).to_have_count(2)
    expect(page.locator(".sequence .step-exit")).to_have_count(1)
    expect(page.locator("#canvas-zoom .palette-item")).to_have_count(0)
    # Both steps, where the canvas showed them when they were dropped.
    assert [step["type"] for step in steps_of(campaign)] == shown
    assert Campaign.objects.get(pk=campaign.pk).version == 3


def test_a_request_sent_twice_adds_one_step(editor_page, workspace):
    page = editor_page
    campaign = make_campaign(workspace)
    open_editor(page, campaign)
    statuses = []

    def send_twice(route):  # as a retrying network or a double-firing handler would
        statuses.append(route.fetch().status)
        second = route.fetch()
        statuses.append(second.status)
        route.fulfill(response=second)

    page.route("**/workflow/add/", send_twice)
    drag(page, page.locator("#palette .palette-item[data-type=exit]"),
         page.locator("#canvas-zoom > .sequence > .slot"))

    expect(page.locator(".sequence .step-exit")).to_have_count(1)
    assert statuses == [200, 200]
    assert [step["type"] for step in steps_of(campaign)] == ["exit"]


def test_the_plus_menu_by_keyboard(editor_page, workspace):
    page = editor_page
    campaign = make_campaign(workspace, [{"id": "first", "type": "delay",
                                          "duration": {"days": 1}}])
    open_editor(page, campaign)

    page.locator(".slot summary").nth(1).focus()
    page.keyboard.press("Enter")  # opens the menu after the first step
    menu = page.locator(".slot details[open] .add-list")
    expect(menu).to_be_visible()
    menu.locator("button[value=time_window]").focus()
    page.keyboard.press("Enter")

    expect(page.locator(".step-time_window")).to_have_count(1)
    expect(page.locator(".step-time_window .step-open")).to_be_focused()
    assert [step["type"] for step in steps_of(campaign)] == ["delay", "time_window"]
    page.keyboard.press("Enter")  # opens the new step's settings
    expect(page.locator("#panel h2")).to_have_text("Time window")


def test_settings_panel_and_email_preview_for_a_real_person_screenshot(editor_page,
                                                                       workspace, screenshot):
    from tests.factories import make_person

    page = editor_page
    make_person(workspace, "ada", email="ada@example.com", first_name="Ada")
    campaign = make_campaign(workspace, [{"id": "mail", "type": "email"}])
    open_editor(page, campaign)
    expect(page.locator("#step-mail .step-flag")).to_be_visible()

    page.click("#step-mail .step-open")
    page.fill("input[name=sender]", "team@example.com")
    page.fill("input[name=subject]", "Hello {{customer.first_name}}")
    page.fill("textarea[name=body_html]", "<p>Hi</p>\n{{ customer.nope }}")
    expect(page.locator("#preview-subject")).to_have_text("Hello Ada")
    expect(page.locator("#preview-errors")).to_contain_text("Body: line 2")
    page.fill("textarea[name=body_html]", "<p>Hi {{customer.first_name}}</p>")
    expect(page.locator("#preview-errors")).to_have_count(0)
    screenshot(page, "workflow-editor")

    page.click("#save-step")
    expect(page.locator("#panel-saved")).to_be_visible()
    expect(page.locator("#step-mail .step-flag")).to_have_count(0)
    mail = steps_of(campaign)[0]
    assert (mail["from"], mail["subject"]) == ("team@example.com",
                                               "Hello {{customer.first_name}}")


def test_a_viewer_sees_no_edit_controls(viewer_page, workspace):
    campaign = make_campaign(workspace, [{"id": "first", "type": "delay",
                                          "duration": {"days": 1}}])
    viewer_page.goto(f"/campaigns/{campaign.pk}/workflow/")
    expect(viewer_page.locator("#step-first")).to_be_visible()
    expect(viewer_page.locator("#palette")).to_have_count(0)
    expect(viewer_page.locator(".slot")).to_have_count(0)
    viewer_page.click("[data-zoom=out]")
    viewer_page.click("[data-zoom=out]")
    expect(viewer_page.locator("#zoom-level")).to_have_text("80%")
    expect(viewer_page.locator("#canvas-zoom")).to_have_attribute("style", "transform: scale(0.8);")


def test_deleting_a_step_where_people_wait_asks_to_move_them_on_or_exit_them(editor_page,
                                                                             workspace):
    from django.utils import timezone

    from campaigns.models import Journey
    from tests.factories import make_person

    page = editor_page
    campaign = make_campaign(workspace, [
        {"id": "first", "type": "delay", "duration": {"days": 1}},
        {"id": "mail", "type": "email"}])
    person = make_person(workspace, "ada")
    journey = Journey.objects.create(workspace=workspace, campaign=campaign, person=person,
                                     cio_id=person.cio_id, entry_key="e1", step_id="mail",
                                     entered_at=timezone.now())
    open_editor(page, campaign)

    page.click("#step-mail .step-delete")
    dialog = page.locator("dialog#people-waiting")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("1 person is at the steps you are removing")
    page.click("#removed-exit")

    expect(dialog).to_have_count(0)
    expect(page.locator("#step-mail")).to_have_count(0)
    journey.refresh_from_db()
    assert (journey.state, journey.exit_reason) == ("exited", "step_removed")
    assert [step["id"] for step in steps_of(campaign)] == ["first"]


def test_a_branch_condition_built_in_rows(editor_page, workspace):
    page = editor_page
    campaign = make_campaign(workspace, [{"id": "check", "type": "branch"}])
    open_editor(page, campaign)
    expect(page.locator("#step-check .step-flag")).to_be_visible()

    page.click("#step-check .step-open")
    page.click("#panel button[value='add:attribute:0']")
    field = page.locator("#panel input[name=n-1-field]")
    expect(field).to_be_focused()
    field.fill("plan")
    page.fill("#panel input[name=n-1-value]", "pro")
    page.press("#panel input[name=n-1-value]", "Enter")  # Enter saves

    expect(page.locator("#panel-saved")).to_be_visible()
    expect(page.locator("#step-check .step-flag")).to_have_count(0)
    assert steps_of(campaign)[0]["condition"] == {"and": [
        {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}]}
