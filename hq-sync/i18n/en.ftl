# Keliling HQ console: English texts (the second language).
# Every key here must also be in id.ftl (tested).

app-name = Keliling HQ
nav-label = Main menu
nav-queue = Queue
logout = Sign out
role-reviewer = Reviewer
role-supervisor = Supervisor

login-title = Sign in
login-lead = Review console for applications from the mobile service buses.
login-username = Username
login-password = Password
login-submit = Sign in
login-other-language = Bahasa Indonesia
login-refused = Wrong username or password.
login-locked = { $n ->
    [one] Too many failed attempts. The account is locked for 1 more minute.
   *[other] Too many failed attempts. The account is locked for { $n } more minutes.
}

error-not-found = Page not found
error-forbidden = You may not open this page
error-csrf = The form expired or is not valid: reload the page and try again
error-bad-request = The request cannot be processed
error-internal = Something went wrong on the server; it has been logged
back-to-queue = Back to the queue

queue-title = Application queue
queue-total = { $n ->
    [one] 1 application
   *[other] { $n } applications
}
queue-status-tabs = Status
queue-empty = No application matches these filters.
queue-bad-date = An invalid date was ignored: use YYYY-MM-DD.
queue-has-warnings = Has NIK warnings
filter-search = Search
filter-search-hint = NIK, tracking number, or start of a name
filter-agency = Agency
filter-service = Service
filter-bus = Bus
filter-village = Village
filter-from = Received from
filter-to = To
filter-order = Order
order-newest = Newest first
order-oldest = Oldest first
filter-warnings = Only with warnings
filter-apply = Apply
queue-export-csv = Download CSV
filter-reset = Reset
filter-any = All

status-all = All
status-waiting_photo = Waiting for photo
status-pending = Not reviewed
status-awaiting_check = Awaiting second check
status-info_requested = More information requested
status-approved = Approved
status-rejected = Rejected

col-received = Received
col-applicant = Applicant
col-nik = NIK
col-service = Service
col-village = Village
col-application = Application
col-bus = Bus
col-status = Status
col-when = When
col-who = Who
col-what = Action
col-change = Change
col-detail = Detail

flag-hidden-chars = This text holds hidden characters (direction overrides or zero-width), shown as ⟨U+…⟩. Check it carefully.
flag-hidden-chars-short = hidden characters
page-first = First page
page-next = Next

claim-held-by = Being reviewed by
claim-yours = You are reviewing this application (until { $until }).
claim-held = Being reviewed by { $name } until { $until }.
claim-none = Nobody is reviewing it.
claim-take = Review this application
claim-release = Release

detail-tracking = Tracking number
detail-collision = Bus { $bus } sent the same tracking number too.
detail-applicant = Applicant
detail-service-fields = Service details
detail-times = Times
detail-captured = Taken on the bus (bus clock)
detail-received = Received at HQ
detail-completed = Complete at HQ
detail-skew = Bus clock difference
detail-skew-flag = the bus clock is off
detail-history = History
skew-in-sync = in step (less than a minute off)
skew-ok = in step
skew-minutes = { $minutes } minutes

attachment-photo = ID photo
attachment-no-photo = This service needs no photo.
attachment-documents = Documents
attachment-chunks = Photo on its way: { $have } of { $of } chunks received
attachment-on-bus = Still on the bus, not sent yet

field-full-name = Full name
field-nik = NIK
field-date-of-birth = Date of birth
field-sex = Sex
field-address = Address
field-phone = Phone
field-village = Village
field-gps = GPS position
field-operator = Bus operator
sex-male = Male
sex-female = Female
warn-nik-birth-date = The NIK's birth date ({ $date }) differs from the stated one. The NIK is kept as issued.
warn-nik-sex = The NIK's sex ({ $sex }) differs from the stated one. The NIK is kept as issued.

audit-viewed = Opened the application
audit-blob-viewed = Opened a photo/document
audit-claimed = Started reviewing
audit-released = Released the review
audit-nik-searched = Searched a NIK
audit-login = Signed in
audit-logout = Signed out
audit-login-refused = Failed sign-in
audit-login-locked = Sign-in refused (account locked)
audit-account-locked = Account locked
audit-staff-added = Account created
audit-password-changed = Password changed
audit-staff-disabled = Account disabled
audit-staff-enabled = Account enabled

decision-title = Decision and delivery to the bus
col-version = Version
col-decision = Decision
col-delivery = On the bus?
decision-status-final = in force
decision-status-awaiting-check = awaiting a second check
decision-status-declined = declined by the checker
decision-by-checked = { $maker }, checked by { $checker }
decision-needs = needs: { $list }
delivery-held = Held at HQ
delivery-waiting = Waiting to be sent
delivery-sent = Sent, not yet confirmed by the bus
delivery-confirmed = Confirmed by the bus
delivery-superseded = Replaced by a newer version
need-photo = A new photo
decide-approve = Approve
decide-reject = Reject
decide-request-info = Request more information
decide-note = Note (optional)
decide-reason = Reason for rejection
decide-choose-reason = Choose a reason…
decide-message = Message for the applicant
decide-needs = What to bring or redo
decide-override-hint = Already decided. As a supervisor you may change it: a new version replaces the old one on the bus.
decide-not-found = Application not found.
decide-claimed-by-other = Someone else is reviewing this application.
decide-claim-first = Click "Review this application" first so others know you are deciding it.
decide-awaiting-check = This rejection is waiting for a second check.
decide-supervisor-only = Already decided; only a supervisor may change it.
decide-photo-missing = Cannot be approved yet: a photo or document is still on its way from the bus.
decide-invalid = The decision form is incomplete or not valid.
check-summary = { $name } proposes: { $what }
check-confirm = Confirm this rejection
check-decline = Decline the rejection
check-nothing = Nothing is waiting for a check.
check-own = The second check must be someone other than the maker.
done-decided = Decision saved; it goes to the bus when it connects.
done-awaiting-check = Rejection saved; it waits for a second check.
done-checked = Rejection confirmed; it goes to the bus when it connects.
done-declined = Rejection declined.
audit-decided = Decided
audit-check-confirmed = Confirmed as second checker
audit-check-declined = Declined as second checker
audit-decision-confirmed = The bus confirmed the decision

nav-fleet = Fleet
fleet-title = Bus fleet
fleet-online-of = { $have } of { $of } buses connected
fleet-online = connected
fleet-offline = not connected
fleet-seen = Last heard
fleet-queue = Waiting to sync
fleet-oldest = Oldest waiting
fleet-last-sync = Last sync
fleet-position = Position
fleet-software = Software version
fleet-clock = Bus clock
fleet-decisions-waiting = Decisions not yet there
fleet-quarantined = Quarantined messages
fleet-revoked = Certificate revoked: { $reason }
fleet-see-applications = See this bus's applications
fleet-empty = HQ has not heard from any bus yet.
fleet-per-day = Applications per day per bus (14 days, by day taken)
fleet-per-village = Applications per village (top 10)
fleet-no-data = No data yet.
ago-seconds = { $n ->
    [one] 1 second ago
   *[other] { $n } seconds ago
}
ago-minutes = { $n ->
    [one] 1 minute ago
   *[other] { $n } minutes ago
}
ago-hours = { $n ->
    [one] 1 hour ago
   *[other] { $n } hours ago
}
ago-days = { $n ->
    [one] 1 day ago
   *[other] { $n } days ago
}

nav-audit = Audit log
nav-quarantine = Quarantine
audit-title = Audit log
audit-chain-ok = Hash chain intact: no row was changed
audit-chain-broken = WARNING: the audit hash chain is broken. A row was changed outside Keliling.
audit-actor = By (username)
audit-audit-viewed = Opened the audit log
audit-exported = Exported
quarantine-title = Quarantine
quarantine-lead = Messages from buses that HQ set aside, with the reason. Nothing is lost: the bus keeps its copy.
quarantine-empty = No message is in quarantine.
quarantine-topic = Topic
quarantine-reason = Reason
audit-api-token-added = API token made
audit-api-token-revoked = API token revoked

photo-advice-title = The bus photo station's advice
photo-advice-none = The photo station gave no advice for this photo.
advice-too-small = Photo too small ({ $size } pixels, at least { $min }): enlarged
advice-too-dark = Photo too dark
advice-too-bright = Photo too bright
advice-blurred = Photo blurred
advice-wrong-background = The background is not { $colour }
colour-red = red
colour-blue = blue
colour-white = white

# Amendments and the station's notes (issue 11).
detail-amends = Completes application
detail-amendments = { $n ->
    [one] Completed by the bus with:
   *[other] Completed by the bus with ({ $n }):
}
photo-approved-on-bus = { $n ->
    [0] Approved by the applicant on the bus's screen.
    [one] Approved by the applicant on the bus's screen, after one retake.
   *[other] Approved by the applicant on the bus's screen, after { $n } retakes.
}
