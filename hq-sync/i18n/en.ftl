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
