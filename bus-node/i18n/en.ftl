# Bus station texts (English). The same keys as id.ftl.
app-name = Keliling
nav-label = Main menu
nav-today = Today
nav-new = New application
nav-find = Find
switch-operator = Switch operator
back-home = Back to the start page
optional = optional
search = Search

error-not-found = Page or application not found
error-csrf = The form has expired: reload the page and try again
error-bad-request = The request cannot be handled
error-internal = Something went wrong on the bus node; saved data is safe

login-title = Operator sign-in
login-lead = Bus { $bus }: tap your name, then type your PIN.
login-who = Who is on duty?
login-pin = PIN
login-submit = Sign in
login-choose = Choose an operator first.
login-pin-format = A PIN is 4 to 8 digits.
login-wrong-pin = { $n ->
    [0] Wrong PIN.
    [one] Wrong PIN. One more try before the lock.
   *[other] Wrong PIN. { $n } tries left before the lock.
}
login-locked = Too many wrong PINs: try again at { $until }.
login-no-operators = This bus has no operators yet. Add one with:
login-example-name = Operator Name
login-other-language = Bahasa Indonesia

banner-online = Connected to HQ
banner-offline = No signal: data is safe on the bus
banner-all-sent = Everything has been sent
banner-waiting = { $n ->
    [one] 1 application waiting
   *[other] { $n } applications waiting
}
banner-eta = about { $time } to go
banner-rejected = { $n } refused by HQ's system: check them
duration-secs = { $n } s
duration-mins = { $n } min
duration-hours = { $n } h

today-title = Today
new-application = New application
count-today = taken today
count-waiting = waiting to send
count-confirmed = confirmed by HQ
count-decided = decided
drafts-title = Not finished
today-list = Today's applications
today-empty = No applications yet today.
decided-title = Latest decisions from HQ
col-time = Time
col-number = Number
col-service = Service
col-state = State
state-saved = Saved on the bus
state-sent = Sent, photo following
state-confirmed = Confirmed by HQ
state-rejected = Refused by HQ's system
decision-approved = Approved
decision-rejected = Rejected
decision-info_requested = More information requested
need-photo = A new photo
need-document = Document: { $doc }

services-title = Choose a service
services-search = Type a service or agency name…
services-shown = { $have } of { $of } services
services-none = No service matches.

draft-saved-at = Saved automatically at { $time }
draft-save = Save draft
section-applicant = Applicant
section-service = Service details
section-documents = Documents received
section-photo = ID photo
field-full-name = Full name
field-nik = NIK
field-dob = Date of birth
field-sex = Sex
field-phone = Phone
field-address = Address
field-village = Village where the bus stands
sex-male = Male
sex-female = Female
date-placeholder = YYYY-MM-DD

required = Required.
text-bad = No control characters, at most 200 letters.
nik-length = A NIK has 16 digits; this one has { $n }.
nik-digits = A NIK holds digits only.
nik-province = Province code { $code } at the start of the NIK is unknown: check the first two digits.
nik-region = The regency/district code in the NIK cannot be 00: check digits 3 to 6.
nik-birth = The birth date inside the NIK (digits 7 to 12) is impossible: check it again.
nik-serial = The NIK's serial (its last 4 digits) cannot be 0000.
nik-warn-birth = The NIK says born { $date }, unlike the form. Kept as it is; check the ID card or family card.
nik-warn-sex = The NIK says the other sex. Kept as it is; check the ID card or family card.
nik-duplicate = This NIK already has an application for this service on this bus ({ $id }).
date-bad = Write the date as YYYY-MM-DD, e.g. 1990-03-12.
date-future = A date of birth cannot be in the future.
phone-bad = A phone number is 8 to 15 digits, + allowed first.
digits16-bad = Must be 16 digits.
choice-bad = Choose one from the list.

photo-take = Take a photo or choose a file
photo-live = Live camera
photo-shoot = Shoot
photo-upload = Send photo
photo-alt = The applicant's ID photo
photo-good = The photo meets the rules.
photo-show-citizen = Show the photo to the applicant. Approve only if they accept it.
photo-approve = The applicant approves the photo
photo-approved = Approved by the applicant
photo-retake = Retake
photo-retakes = { $n ->
    [one] retaken once
   *[other] retaken { $n } times
}
photo-none = No photo chosen yet.
photo-needs-dob = Fill in the date of birth first: the background colour depends on the birth year.
photo-unusable = The photo cannot be used: { $why }
photo-required = This service needs an ID photo.
photo-retake-first = The photo must be retaken before saving.
photo-not-approved = The applicant has not approved the photo yet.
advice-too-small = Photo too small: raise the camera resolution and retake.
advice-too-dark = Photo too dark: add light and retake.
advice-too-bright = Photo too bright: reduce the light or turn off the flash.
advice-blurred = Photo blurred: hold the camera steady and focus on the face.
advice-background = The background is not { $colour }: use a { $colour } background and retake.
colour-red = red
colour-blue = blue
colour-white = white

save-application = Save application
save-help = Saved on the bus, encrypted; sent to HQ when there is signal.
save-fix-first = Fix the fields marked in red, then save again.
save-failed = Not saved yet: { $why }
discard = Discard draft
discard-confirm = Discard this draft? What was typed will be lost.
withdrawn-title = This service is no longer offered
withdrawn-body = HQ's newest service catalogue (version { $version }) no longer has { $service }, so this draft cannot be saved. Discard it and start again with another service if the citizen still needs one.
withdrawn-applicant = Applicant

saved-done = The application is saved safely on the bus. Print the receipt for the applicant.
receipt-title = Receipt
receipt-heading = APPLICATION RECEIPT
receipt-qr = QR code of the tracking number
receipt-number = Tracking number
receipt-date = Date
receipt-place = Place
receipt-operator = Operator
receipt-documents = Received
receipt-photo = ID photo
receipt-next = What happens next
receipt-next-text = The application goes to HQ when the bus has signal, where staff review it. Ask for the decision at this bus with this receipt.
receipt-keep = Keep this receipt. The tracking number is needed to ask about the application.
print-title = Print
paper-thermal = 80 mm paper
paper-a4 = A4
print = Print receipt
next-citizen = Next applicant

find-title = Find an application
find-placeholder = Tracking number or NIK
find-help = Type the whole tracking number, its last 8 characters (as on the receipt), or the 16-digit NIK.
find-bad-nik = Not a valid NIK: check its 16 digits.
find-what = Type a tracking number or a 16-digit NIK.
find-none = No application on this bus matches.

amend-title = Completing application
scan-title = Document scans
scan-which = Document
scan-take = Photograph or choose the document
scan-upload = Attach
scan-attached = attached { $size }
scan-asked = asked by HQ
scan-none = No document file chosen yet.
scan-kind = A document file must be a JPEG, PNG or PDF.
scan-too-large = The document file is too large (8 MB at most).
scan-asked-missing = Attach the documents HQ asked for first.
amend-start = Complete it now
amend-help = HQ asks for more information. Start an amendment: the applicant's details are filled in, add what was asked for.
amendments-title = Amendments

nav-summary = End of stop
summary-title = End of the stop
summary-print = Print the report
summary-heading = MOBILE SERVICE REPORT (BERITA ACARA)
summary-operators = Operators
summary-taken = Taken
summary-confirmed = Confirmed by HQ
summary-waiting-col = Waiting to send
summary-refused = Refused
summary-total = Total
summary-waiting = Not yet at HQ
summary-none-waiting = HQ has confirmed every application.
summary-unsynced = { $n ->
    [one] 1 application is not at HQ yet. It is safe on the bus, but keep the bus node running until there is signal and everything is sent.
   *[other] { $n } applications are not at HQ yet. They are safe on the bus, but keep the bus node running until there is signal and everything is sent.
}
summary-all-synced = HQ has confirmed every application. The bus may drive on.
summary-sign-operator = Operator
summary-sign-village = Village head
