# Konsol HQ Keliling: teks Bahasa Indonesia (bahasa utama).
# Setiap kunci di sini harus ada juga di en.ftl (diuji).

app-name = Keliling HQ
nav-label = Menu utama
nav-queue = Antrian
logout = Keluar
role-reviewer = Peninjau
role-supervisor = Supervisor

login-title = Masuk
login-lead = Konsol peninjauan permohonan dari bus layanan keliling.
login-username = Nama pengguna
login-password = Kata sandi
login-submit = Masuk
login-other-language = English
login-refused = Nama pengguna atau kata sandi salah.
login-locked = { $n ->
    [one] Terlalu banyak percobaan gagal. Akun dikunci selama 1 menit lagi.
   *[other] Terlalu banyak percobaan gagal. Akun dikunci selama { $n } menit lagi.
}

error-not-found = Halaman tidak ditemukan
error-forbidden = Anda tidak berhak membuka halaman ini
error-csrf = Formulir kedaluwarsa atau tidak sah: muat ulang halaman dan coba lagi
error-bad-request = Permintaan tidak dapat diproses
error-internal = Terjadi kesalahan di server; sudah dicatat
back-to-queue = Kembali ke antrian

queue-title = Antrian permohonan
queue-total = { $n ->
    [one] 1 permohonan
   *[other] { $n } permohonan
}
queue-status-tabs = Status
queue-empty = Tidak ada permohonan yang cocok dengan saringan ini.
queue-bad-date = Tanggal tidak valid diabaikan: gunakan format TTTT-BB-HH.
queue-has-warnings = Ada peringatan NIK
filter-search = Cari
filter-search-hint = NIK, nomor pelacakan, atau awal nama
filter-agency = Instansi
filter-service = Layanan
filter-bus = Bus
filter-village = Desa
filter-from = Diterima sejak
filter-to = Sampai
filter-order = Urutan
order-newest = Terbaru dulu
order-oldest = Terlama dulu
filter-warnings = Hanya yang ada peringatan
filter-apply = Terapkan
queue-export-csv = Unduh CSV
filter-reset = Atur ulang
filter-any = Semua

status-all = Semua
status-waiting_photo = Menunggu foto
status-pending = Belum ditinjau
status-awaiting_check = Menunggu pemeriksa kedua
status-info_requested = Perlu info tambahan
status-approved = Disetujui
status-rejected = Ditolak

col-received = Diterima
col-applicant = Pemohon
col-nik = NIK
col-service = Layanan
col-village = Desa
col-application = Permohonan
col-bus = Bus
col-status = Status
col-when = Waktu
col-who = Oleh
col-what = Tindakan
col-change = Perubahan
col-detail = Keterangan

flag-hidden-chars = Teks ini memuat karakter tersembunyi (pembalik arah atau lebar nol), ditampilkan sebagai ⟨U+…⟩. Periksa dengan teliti.
flag-hidden-chars-short = karakter tersembunyi
page-first = Halaman pertama
page-next = Berikutnya

claim-held-by = Sedang ditinjau oleh
claim-yours = Anda sedang meninjau permohonan ini (sampai { $until }).
claim-held = Sedang ditinjau oleh { $name } sampai { $until }.
claim-none = Belum ada yang meninjau.
claim-take = Tinjau permohonan ini
claim-release = Lepaskan

detail-tracking = Nomor pelacakan
detail-collision = Nomor pelacakan yang sama juga dikirim oleh bus { $bus }.
detail-applicant = Data pemohon
detail-service-fields = Data layanan
detail-times = Waktu
detail-captured = Diambil di bus (jam bus)
detail-received = Diterima HQ
detail-completed = Lengkap di HQ
detail-skew = Selisih jam bus
detail-skew-flag = jam bus tidak tepat
detail-history = Riwayat
skew-in-sync = tepat (selisih kurang dari 1 menit)
skew-ok = tepat
skew-minutes = { $minutes } menit

attachment-photo = Pas foto
attachment-no-photo = Layanan ini tidak memerlukan foto.
attachment-documents = Dokumen
attachment-chunks = Foto sedang dikirim: { $have } dari { $of } bagian diterima
attachment-on-bus = Masih di bus, belum mulai dikirim

field-full-name = Nama lengkap
field-nik = NIK
field-date-of-birth = Tanggal lahir
field-sex = Jenis kelamin
field-address = Alamat
field-phone = Telepon
field-village = Desa
field-gps = Lokasi GPS
field-operator = Petugas bus
sex-male = Laki-laki
sex-female = Perempuan
warn-nik-birth-date = Tanggal lahir pada NIK ({ $date }) berbeda dengan yang dinyatakan. NIK disimpan apa adanya.
warn-nik-sex = Jenis kelamin pada NIK ({ $sex }) berbeda dengan yang dinyatakan. NIK disimpan apa adanya.

audit-viewed = Membuka permohonan
audit-blob-viewed = Membuka foto/dokumen
audit-claimed = Mulai meninjau
audit-released = Melepaskan tinjauan
audit-nik-searched = Mencari NIK
audit-login = Masuk
audit-logout = Keluar
audit-login-refused = Gagal masuk
audit-login-locked = Masuk ditolak (akun terkunci)
audit-account-locked = Akun dikunci
audit-staff-added = Akun dibuat
audit-password-changed = Kata sandi diganti
audit-staff-disabled = Akun dinonaktifkan
audit-staff-enabled = Akun diaktifkan

decision-title = Keputusan dan pengiriman ke bus
col-version = Versi
col-decision = Keputusan
col-delivery = Sampai di bus?
decision-status-final = berlaku
decision-status-awaiting-check = menunggu pemeriksa kedua
decision-status-declined = dibatalkan pemeriksa
decision-by-checked = { $maker }, diperiksa { $checker }
decision-needs = perlu: { $list }
delivery-held = Ditahan di HQ
delivery-waiting = Menunggu dikirim
delivery-sent = Terkirim, belum dikonfirmasi bus
delivery-confirmed = Dikonfirmasi oleh bus
delivery-superseded = Digantikan versi baru
need-photo = Foto baru
decide-approve = Setujui
decide-reject = Tolak
decide-request-info = Minta info tambahan
decide-note = Catatan (opsional)
decide-reason = Alasan penolakan
decide-choose-reason = Pilih alasan…
decide-message = Pesan untuk pemohon
decide-needs = Yang perlu dibawa/diulang
decide-override-hint = Sudah diputuskan. Sebagai supervisor Anda dapat mengubahnya: versi baru menggantikan yang lama di bus.
decide-not-found = Permohonan tidak ditemukan.
decide-claimed-by-other = Permohonan ini sedang ditinjau orang lain.
decide-claim-first = Klik "Tinjau permohonan ini" dulu agar orang lain tahu Anda sedang memutuskannya.
decide-awaiting-check = Penolakan ini menunggu pemeriksa kedua.
decide-supervisor-only = Sudah diputuskan; hanya supervisor yang dapat mengubahnya.
decide-photo-missing = Belum bisa disetujui: foto atau dokumen masih dalam perjalanan dari bus.
decide-invalid = Isian keputusan tidak lengkap atau tidak valid.
check-summary = { $name } mengusulkan: { $what }
check-confirm = Setujui penolakan ini
check-decline = Batalkan penolakan
check-nothing = Tidak ada yang menunggu pemeriksaan.
check-own = Pemeriksa kedua harus orang lain, bukan pembuat keputusan.
done-decided = Keputusan disimpan; dikirim ke bus saat terhubung.
done-awaiting-check = Penolakan disimpan dan menunggu pemeriksa kedua.
done-checked = Penolakan disetujui; dikirim ke bus saat terhubung.
done-declined = Penolakan dibatalkan.
audit-decided = Memutuskan
audit-check-confirmed = Menyetujui sebagai pemeriksa kedua
audit-check-declined = Membatalkan sebagai pemeriksa kedua
audit-decision-confirmed = Bus mengonfirmasi keputusan

nav-fleet = Armada
fleet-title = Armada bus
fleet-online-of = { $have } dari { $of } bus sedang terhubung
fleet-online = terhubung
fleet-offline = tidak terhubung
fleet-seen = Terakhir terdengar
fleet-queue = Menunggu sinkron
fleet-oldest = Tertua menunggu
fleet-last-sync = Sinkron terakhir
fleet-position = Posisi
fleet-software = Versi perangkat lunak
fleet-clock = Jam bus
fleet-decisions-waiting = Keputusan belum sampai
fleet-quarantined = Pesan dikarantina
fleet-revoked = Sertifikat dicabut: { $reason }
fleet-see-applications = Lihat permohonan bus ini
fleet-empty = Belum ada bus yang terdengar oleh HQ.
fleet-per-day = Permohonan per hari per bus (14 hari, menurut tanggal pengambilan)
fleet-per-village = Permohonan per desa (10 terbanyak)
fleet-no-data = Belum ada data.
ago-seconds = { $n } detik lalu
ago-minutes = { $n } menit lalu
ago-hours = { $n } jam lalu
ago-days = { $n } hari lalu

nav-audit = Jejak audit
nav-quarantine = Karantina
audit-title = Jejak audit
audit-chain-ok = Rantai hash utuh: tidak ada baris yang diubah
audit-chain-broken = PERINGATAN: rantai hash audit terputus. Ada baris yang diubah di luar Keliling.
audit-actor = Oleh (nama pengguna)
audit-audit-viewed = Membuka jejak audit
audit-exported = Mengekspor
quarantine-title = Karantina
quarantine-lead = Pesan dari bus yang disisihkan HQ, dengan alasannya. Tidak ada yang hilang: bus menyimpan salinannya.
quarantine-empty = Tidak ada pesan yang dikarantina.
quarantine-topic = Topik
quarantine-reason = Alasan
audit-api-token-added = Token API dibuat
audit-api-token-revoked = Token API dicabut

photo-advice-title = Saran stasiun foto di bus
photo-advice-none = Stasiun foto tidak memberi saran untuk foto ini.
advice-too-small = Foto terlalu kecil ({ $size } piksel, minimal { $min }): diperbesar
advice-too-dark = Foto terlalu gelap
advice-too-bright = Foto terlalu terang
advice-blurred = Foto buram
advice-wrong-background = Latar belakang bukan { $colour }
colour-red = merah
colour-blue = biru
colour-white = putih

# Amendments and the station's notes (issue 11).
detail-amends = Melengkapi permohonan
detail-amendments = { $n ->
   *[other] Dilengkapi oleh bus dengan:
}
photo-approved-on-bus = { $n ->
    [0] Disetujui pemohon di layar bus.
   *[other] Disetujui pemohon di layar bus, setelah { $n } kali diambil ulang.
}
